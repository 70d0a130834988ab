"""The per-item steps of translation that a cache kept between builds may answer instead (pipeline_cache).

Each step is a pure function of its arguments, so a cache keyed on those arguments returns exactly what the
step would; these defaults compute every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reconciler.config.model import BoundServer, ResolvedConfig
from reconciler.diagnostics import Finding
from reconciler.translate.clusters import ServiceClusters, encode_service_clusters
from reconciler.translate.routes import HttpRoutes, VirtualHostEncoder, virtual_host_entry, vs_routes
from reconciler.translate.snapshot import XdsResource


@dataclass(frozen=True)
class RouteConfigRequest:
    """One route configuration of a port: its name, the servers whose virtual hosts it holds, and whether their
    `tls.httpsRedirect` applies (plain-text servers)."""

    name: str
    port: int
    servers: Sequence[BoundServer]
    redirects: bool


BuiltRouteConfig = tuple[XdsResource, tuple[Finding, ...]]  # with the findings of its https redirects
# Given the config, the request and how to build it: the route configuration (a cache may answer instead).
RouteConfigs = Callable[[ResolvedConfig, RouteConfigRequest, Callable[[], BuiltRouteConfig]], BuiltRouteConfig]


def build_each_time(
    config: ResolvedConfig, request: RouteConfigRequest, build: Callable[[], BuiltRouteConfig]
) -> BuiltRouteConfig:
    return build()


@dataclass(frozen=True)
class TranslateMemos:
    http_routes: HttpRoutes = vs_routes  # one VirtualService's routes on one gateway port
    virtual_host: VirtualHostEncoder = virtual_host_entry  # one virtual host's serialized entry
    service_clusters: ServiceClusters = encode_service_clusters  # one service's clusters and endpoints
    route_configs: RouteConfigs = build_each_time  # one route configuration, whole
