"""Envoy listeners and filter chains for gateway servers, named and shaped as istiod builds them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import wrappers_pb2

from reconciler.manifests.model import UNIX_PREFIX
from reconciler.translate.common import ads_source, pack, seconds
from reconciler.translate.http_filters import gateway_http_filters

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
# istiod's PILOT_GATEWAY_TRANSPORT_SOCKET_CONNECT_TIMEOUT: a TLS handshake that has not finished by then is
# dropped, so slow-handshake clients cannot pin connections (and memory) open.
TLS_HANDSHAKE_TIMEOUT_S = 15.0


def listener_name(bind: str, port: int) -> str:
    return f"{bind or '0.0.0.0'}_{port}"


def gateway_listener(
    name: str, address: str, port: int, chains: Sequence[listener_components_pb2.FilterChain]
) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(
        name=name,
        address=_address(address, port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=chains,
    )
    # istiod adds the TLS inspector when a chain matches on SNI or terminates TLS (ALPN).
    if any(chain.filter_chain_match.server_names or chain.HasField("transport_socket") for chain in chains):
        listener.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
            )
        )
    return listener


def _address(address: str, port: int) -> address_pb2.Address:
    if address.startswith(UNIX_PREFIX):  # `bind: unix:///path` or `unix://@abstract` (port 0)
        return address_pb2.Address(pipe=address_pb2.Pipe(path=address[len(UNIX_PREFIX) :]))
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))


def http_chain(stat_prefix: str, route_config: str) -> listener_components_pb2.FilterChain:
    """The one chain of a plain-text HTTP port."""
    return listener_components_pb2.FilterChain(filters=[_hcm_filter(_connection_manager(stat_prefix, route_config))])


def https_chain(
    stat_prefix: str, route_config: str, server_names: Iterable[str], tls: tls_pb2.DownstreamTlsContext
) -> listener_components_pb2.FilterChain:
    """A terminating HTTPS server's chain: its SNI names, its certificates, its own route config."""
    manager = _connection_manager(stat_prefix, route_config)
    # istiod's gateway default: replace any client-sent x-forwarded-client-cert with what Envoy verified.
    manager.forward_client_cert_details = hcm.HttpConnectionManager.SANITIZE_SET
    manager.set_current_client_cert_details.CopyFrom(
        hcm.HttpConnectionManager.SetCurrentClientCertDetails(
            subject=wrappers_pb2.BoolValue(value=True), cert=True, dns=True, uri=True
        )
    )
    return tcp_chain([_hcm_filter(manager)], server_names, tls)


def tcp_chain(
    filters: Sequence[listener_components_pb2.Filter],
    server_names: Iterable[str] = (),
    tls: tls_pb2.DownstreamTlsContext | None = None,
) -> listener_components_pb2.FilterChain:
    chain = listener_components_pb2.FilterChain(filters=filters)
    chain.filter_chain_match.server_names.extend(server_names)
    if not chain.filter_chain_match.server_names:
        chain.ClearField("filter_chain_match")
    if tls is not None:
        chain.transport_socket.CopyFrom(base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(tls)))
        chain.transport_socket_connect_timeout.CopyFrom(seconds(TLS_HANDSHAKE_TIMEOUT_S))
    return chain


def _hcm_filter(manager: hcm.HttpConnectionManager) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(manager))


def _connection_manager(stat_prefix: str, route_config: str) -> hcm.HttpConnectionManager:
    return hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManager.AUTO,
        rds=hcm.Rds(config_source=ads_source(), route_config_name=route_config),
        http_filters=gateway_http_filters(),
        # istiod's gateway defaults: trust the connection's peer address, normalise paths, allow websockets.
        use_remote_address=_bool(True),
        normalize_path=_bool(True),
        path_with_escaped_slashes_action=hcm.HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[hcm.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )


def _bool(value: bool) -> wrappers_pb2.BoolValue:
    return wrappers_pb2.BoolValue(value=value)
