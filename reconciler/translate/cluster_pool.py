"""DestinationRule `connectionPool` + the port's protocol → circuit breakers, timeouts and upstream HTTP options.

Follows istiod's applyConnectionPool / setUpstreamProtocol / applyH2Upgrade: every threshold is 2^32-1 unless
the rule sets it, and the upstream speaks HTTP/2 for HTTP2/GRPC ports or `h2UpgradePolicy: UPGRADE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from google.protobuf import wrappers_pb2

from reconciler.manifests.durations import Duration
from reconciler.manifests.model import ConnectionPoolSettings, ServicePort, TCPKeepalive
from reconciler.translate.common import duration, pack, seconds

CONNECT_TIMEOUT_S = 10.0  # istiod's mesh default connectTimeout
UNLIMITED = 2**32 - 1  # istiod sets every circuit-breaker threshold to this unless a DestinationRule says otherwise
HTTP2_PROTOCOLS = {"HTTP2", "GRPC", "GRPC-WEB"}
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class TlsOrigination:
    """What upstream TLS adds to the HTTP options: SNI and SAN checks taken from the request's host."""

    auto_sni: bool = False
    auto_san_validation: bool = False


def apply_connection_pool(cluster: cluster_pb2.Cluster, pool: ConnectionPoolSettings | None) -> None:
    tcp = pool.tcp if pool else None
    http = pool.http if pool else None
    cluster.connect_timeout.CopyFrom(
        duration(tcp.connect_timeout) if tcp and tcp.connect_timeout else seconds(CONNECT_TIMEOUT_S)
    )
    cluster.circuit_breakers.CopyFrom(
        circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    max_connections=_limit(tcp.max_connections if tcp else 0),
                    # Envoy applies max_pending_requests to HTTP/1 pools and max_requests to HTTP/2 ones.
                    max_pending_requests=_limit(http.http1_max_pending_requests if http else 0),
                    max_requests=_limit(http.http2_max_requests if http else 0),
                    max_retries=_limit(http.max_retries if http else 0),
                    track_remaining=True,
                )
            ]
        )
    )
    if tcp is not None and tcp.tcp_keepalive is not None:
        cluster.upstream_connection_options.tcp_keepalive.CopyFrom(_keepalive(tcp.tcp_keepalive))


def apply_http_options(
    cluster: cluster_pb2.Cluster,
    port: ServicePort,
    pool: ConnectionPoolSettings | None,
    tls: TlsOrigination,
) -> None:
    """Set `typed_extension_protocol_options` when anything differs from Envoy's HTTP/1.1 default."""
    http = pool.http if pool else None
    options = hpo.HttpProtocolOptions()
    http2 = speaks_http2(port, pool)
    h2 = protocol_pb2.Http2ProtocolOptions()
    if http is not None and http.max_concurrent_streams:
        h2.max_concurrent_streams.value = http.max_concurrent_streams
    if http2:
        options.explicit_http_config.http2_protocol_options.CopyFrom(h2)
    elif http is not None and http.use_client_protocol:
        options.use_downstream_protocol_config.http_protocol_options.SetInParent()
        options.use_downstream_protocol_config.http2_protocol_options.CopyFrom(h2)
    _apply_common_options(options.common_http_protocol_options, pool)
    if tls.auto_sni:
        options.upstream_http_protocol_options.auto_sni = True
    if tls.auto_san_validation:
        options.upstream_http_protocol_options.auto_san_validation = True
    if options.ListFields():
        if options.WhichOneof("upstream_protocol_options") is None:  # Envoy requires one; HTTP/1.1 is the default
            options.explicit_http_config.http_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))


def speaks_http2(port: ServicePort, pool: ConnectionPoolSettings | None) -> bool:
    http = pool.http if pool else None
    policy = http.h2_upgrade_policy if http else "DEFAULT"
    if policy == "UPGRADE":
        return True
    if http is not None and http.use_client_protocol:
        return False
    # DO_NOT_UPGRADE only declines the upgrade of HTTP/1 ports; an HTTP2/GRPC port stays HTTP/2 (istiod).
    return (port.protocol or "").upper() in HTTP2_PROTOCOLS


def _apply_common_options(common: protocol_pb2.HttpProtocolOptions, pool: ConnectionPoolSettings | None) -> None:
    tcp = pool.tcp if pool else None
    http = pool.http if pool else None
    # The HTTP idle timeout falls back to the TCP one (istiod).
    idle: Duration | None = (http.idle_timeout if http else None) or (tcp.idle_timeout if tcp else None)
    if idle is not None:
        common.idle_timeout.CopyFrom(duration(idle))
    if http is not None and http.max_requests_per_connection:
        common.max_requests_per_connection.value = http.max_requests_per_connection
    if tcp is not None and tcp.max_connection_duration is not None:
        common.max_connection_duration.CopyFrom(duration(tcp.max_connection_duration))


def _keepalive(keepalive: TCPKeepalive) -> address_pb2.TcpKeepalive:
    """Empty turns on SO_KEEPALIVE with the OS defaults; each field set overrides one (whole seconds, as istiod)."""
    out = address_pb2.TcpKeepalive()
    if keepalive.probes > 0:
        out.keepalive_probes.value = keepalive.probes
    if keepalive.time is not None:
        out.keepalive_time.value = keepalive.time.nanos // 1_000_000_000
    if keepalive.interval is not None:
        out.keepalive_interval.value = keepalive.interval.nanos // 1_000_000_000
    return out


def _limit(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value if value > 0 else UNLIMITED)
