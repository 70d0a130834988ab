"""Gateway servers → Envoy listeners: one per (bind, port), named as istiod names them."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import wrappers_pb2

from reconciler.translate.common import ads_source, pack
from reconciler.translate.http_filters import gateway_http_filters

HCM_FILTER = "envoy.filters.network.http_connection_manager"


def listener_name(bind: str, port: int) -> str:
    return f"{bind or '0.0.0.0'}_{port}"


def http_listener(name: str, address: str, port: int, route_config: str) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=_socket_address(address, port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[_http_filter_chain(f"outbound_{name}", route_config)],
    )


def _socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))


def _http_filter_chain(stat_prefix: str, route_config: str) -> listener_components_pb2.FilterChain:
    manager = hcm.HttpConnectionManager(
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
    return listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(manager))]
    )


def _bool(value: bool) -> wrappers_pb2.BoolValue:
    return wrappers_pb2.BoolValue(value=value)
