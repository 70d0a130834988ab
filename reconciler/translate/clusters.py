"""ServiceEntries + DestinationRules → Envoy clusters and their endpoint assignments.

Like istiod, a gateway gets one cluster per registry service port plus one per DestinationRule subset, each
with the traffic policy merged for that port and subset (cluster_policy.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from reconciler.config.model import ResolvedConfig, ResolvedDestinationRule, Service
from reconciler.manifests.model import ServicePort, TrafficPolicy
from reconciler.translate.cluster_endpoints import load_assignment, uses_eds
from reconciler.translate.cluster_lb import apply_load_balancer, apply_outlier_detection
from reconciler.translate.cluster_policy import effective_policy, rule_for
from reconciler.translate.cluster_pool import TlsOrigination, apply_connection_pool, apply_http_options, speaks_http2
from reconciler.translate.cluster_tls import upstream_tls
from reconciler.translate.common import ads_source, cluster_name, seconds
from reconciler.translate.snapshot import XdsResource

DNS_REFRESH_S = 60  # istiod's mesh default dnsRefreshRate


# A service's clusters and endpoint assignments, serialized; they read nothing but the service and its rule.
ServiceClusters = Callable[[Service, ResolvedDestinationRule | None], Sequence[XdsResource]]


def build_clusters(config: ResolvedConfig, service_clusters: ServiceClusters | None = None) -> tuple[XdsResource, ...]:
    """Every registry service per port, plus one cluster per DestinationRule subset (as istiod does).

    `service_clusters` replaces `encode_service_clusters`, e.g. by a cache keyed on the service and its rule.
    """
    encode = service_clusters or encode_service_clusters
    services = config.services
    return tuple(resource for host in sorted(services) for resource in encode(services[host], rule_for(config, host)))


def encode_service_clusters(service: Service, rule: ResolvedDestinationRule | None) -> tuple[XdsResource, ...]:
    return tuple(XdsResource.of(message) for message in _service_clusters(service, rule))


def _service_clusters(service: Service, rule: ResolvedDestinationRule | None) -> Iterator[Message]:
    host = service.host
    subsets = [(s.name, dict(s.labels)) for s in rule.spec.subsets] if rule else []
    for port in service.ports:
        for subset, labels in [("", {}), *subsets]:
            name = cluster_name(port.number, subset, host)
            policy = effective_policy(rule.spec if rule else None, subset, port.number)
            cluster = _cluster(name, service, port, labels, policy)
            if rule is not None:
                _tag(cluster, rule, subset)
            yield cluster
            if uses_eds(service):
                yield load_assignment(name, service, port, labels)


def _cluster(
    name: str, service: Service, port: ServicePort, labels: Mapping[str, str], policy: TrafficPolicy | None
) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name)
    if uses_eds(service):
        cluster.type = cluster_pb2.Cluster.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
    else:
        # DNS resolves every endpoint and spreads over all answers; DNS_ROUND_ROBIN keeps one connection
        # target at a time (istiod's convertResolution).
        cluster.type = (
            cluster_pb2.Cluster.LOGICAL_DNS
            if service.resolution == "DNS_ROUND_ROBIN"
            else cluster_pb2.Cluster.STRICT_DNS
        )
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        cluster.respect_dns_ttl = True
        cluster.dns_refresh_rate.CopyFrom(seconds(DNS_REFRESH_S))
        cluster.load_assignment.CopyFrom(load_assignment(name, service, port, labels))
    pool = policy.connection_pool if policy else None
    apply_connection_pool(cluster, pool)
    apply_load_balancer(cluster, policy.load_balancer if policy else None)
    apply_outlier_detection(cluster, policy.outlier_detection if policy else None)
    http2 = speaks_http2(port, pool)
    tls = upstream_tls(policy.tls if policy else None, service.source.spec.subject_alt_names, http2)
    if tls is not None:
        cluster.transport_socket.CopyFrom(tls.socket)
    apply_http_options(cluster, port, pool, tls.origination if tls else TlsOrigination())
    return cluster


def _tag(cluster: cluster_pb2.Cluster, rule: ResolvedDestinationRule, subset: str) -> None:
    """Name the DestinationRule (and subset) behind the cluster, as istiod does, so a NACK or a dump of the
    cluster leads back to the manifest."""
    source = rule.sources[0]
    fields = {
        "config": struct_pb2.Value(
            string_value=f"/apis/networking.istio.io/v1/namespaces/{source.namespace}/destination-rule/{source.name}"
        )
    }
    if subset:
        fields["subset"] = struct_pb2.Value(string_value=subset)
    cluster.metadata.filter_metadata["istio"].CopyFrom(struct_pb2.Struct(fields=fields))
