"""ServiceEntries (+ DestinationRule subsets) → Envoy clusters and their endpoint assignments."""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from reconciler.config.model import ResolvedConfig, Service
from reconciler.manifests.model import ServicePort, WorkloadEntry
from reconciler.translate.common import ads_source, cluster_name, pack, seconds

CONNECT_TIMEOUT_S = 10.0  # istiod's mesh default connectTimeout
UNLIMITED = 2**32 - 1  # istiod sets every circuit-breaker threshold to this unless a DestinationRule says otherwise
HTTP2_PROTOCOLS = {"HTTP2", "GRPC", "GRPC-WEB"}
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def build_clusters(config: ResolvedConfig) -> Iterator[Message]:
    """Every registry service per port, plus one cluster per DestinationRule subset (as istiod does)."""
    for host in sorted(config.services):
        service = config.services[host]
        rule = config.destination_rules.get(host)
        subsets = [(s.name, dict(s.labels)) for s in rule.spec.subsets] if rule else []
        for port in service.ports:
            for subset, labels in [("", {}), *subsets]:
                name = cluster_name(port.number, subset, host)
                yield _cluster(name, service, port, labels)
                if _uses_eds(service):
                    yield _load_assignment(name, service, port, labels)


def _uses_eds(service: Service) -> bool:
    # Gateways turn resolution NONE into EDS too (istiod: "gateways fall back to EDS").
    return service.resolution in ("STATIC", "NONE")


def _cluster(name: str, service: Service, port: ServicePort, labels: dict[str, str]) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=name,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    max_connections=wrappers_pb2.UInt32Value(value=UNLIMITED),
                    max_pending_requests=wrappers_pb2.UInt32Value(value=UNLIMITED),
                    max_requests=wrappers_pb2.UInt32Value(value=UNLIMITED),
                    max_retries=wrappers_pb2.UInt32Value(value=UNLIMITED),
                    track_remaining=True,
                )
            ]
        ),
    )
    if _uses_eds(service):
        cluster.type = cluster_pb2.Cluster.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
    else:
        cluster.type = (
            cluster_pb2.Cluster.LOGICAL_DNS
            if service.resolution == "DNS_ROUND_ROBIN"
            else cluster_pb2.Cluster.STRICT_DNS
        )
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        cluster.respect_dns_ttl = True
        cluster.dns_refresh_rate.CopyFrom(seconds(60))
        cluster.load_assignment.CopyFrom(_load_assignment(name, service, port, labels))
    if (port.protocol or "").upper() in HTTP2_PROTOCOLS:
        options = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return cluster


def _load_assignment(
    name: str, service: Service, port: ServicePort, labels: dict[str, str]
) -> endpoint_pb2.ClusterLoadAssignment:
    endpoints = [e for e in service.endpoints if all(e.labels.get(k) == v for k, v in labels.items())]
    if not service.endpoints and service.resolution.startswith("DNS"):
        # A DNS ServiceEntry without endpoints resolves its own host names.
        endpoints = [WorkloadEntry(address=h) for h in [service.host] if "*" not in h]
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=e.address, port_value=_endpoint_port(e, port))
                )
            ),
            load_balancing_weight=wrappers_pb2.UInt32Value(value=e.weight) if e.weight else None,
        )
        for e in endpoints
    ]
    locality = endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints) if lb_endpoints else None
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[locality] if locality else [])


def _endpoint_port(endpoint: WorkloadEntry, port: ServicePort) -> int:
    """The endpoint's own mapping for the port name wins, then the port's targetPort, then its number."""
    return endpoint.ports.get(port.name) or port.target_port or port.number
