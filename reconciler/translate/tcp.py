"""VirtualService `tcp` and `tls` routes → Envoy tcp_proxy filters (the rules are chosen in `config.l4_routes`)."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from reconciler.config.l4_routes import L4Route
from reconciler.config.model import ResolvedConfig
from reconciler.translate.common import destination_cluster, pack

TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"


def tcp_proxy_filter(
    config: ResolvedConfig, route: L4Route, listener_port: int
) -> listener_components_pb2.Filter | None:
    """tcp_proxy to the route's destinations (weighted when several), or None when it has none.

    Validation reports a rule without destinations (missing-action, zero-total-weight) and the pipeline does
    not translate a fleet it reaches; None only keeps a direct call from building an empty proxy.
    """
    proxy = tcp_proxy_pb2.TcpProxy()
    destinations = route.destinations
    if len(destinations) == 1:
        cluster = destination_cluster(config, destinations[0].destination, listener_port)
        proxy.stat_prefix = proxy.cluster = cluster
    else:
        proxy.stat_prefix = f"{route.vs.resource.name}.{route.vs.namespace}"
        for destination in destinations:
            if destination.weight > 0:  # istiod drops 0-weight destinations; Envoy normalises the rest
                proxy.weighted_clusters.clusters.append(
                    tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(
                        name=destination_cluster(config, destination.destination, listener_port),
                        weight=destination.weight,
                    )
                )
        if not proxy.weighted_clusters.clusters:
            return None
    return listener_components_pb2.Filter(name=TCP_PROXY_FILTER, typed_config=pack(proxy))
