"""Memo tables that let `pipeline.build` redo only what a revision changed.

A table is keyed either by content (a file's path and bytes) or by the identity of an object an earlier
table handed out for unchanged content: a file whose bytes did not change yields the very same Resource
objects, so everything computed from those objects alone can be reused by identity. A hit therefore returns
exactly what the computation would have returned, and a cached build is byte-identical to a fresh one
(tests/unit/test_incremental_build.py holds us to that).

Memory stays bounded: each build ages every table, and an entry no lookup of the latest two builds used is
dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from envoy.config.route.v3 import route_components_pb2 as rc

from reconciler.config.model import ResolvedConfig, ResolvedDestinationRule, ResolvedVirtualService, Service
from reconciler.config.resolve_memo import ResolveMemo
from reconciler.diagnostics import Finding
from reconciler.manifests.loader import load_file
from reconciler.manifests.model import Resource
from reconciler.memo import Memo, Same
from reconciler.translate.clusters import encode_service_clusters
from reconciler.translate.memos import BuiltRouteConfig, RouteConfigRequest, TranslateMemos
from reconciler.translate.routes import Proxy, VirtualHostPlan, proxy_of, virtual_host_entry, vs_routes
from reconciler.translate.snapshot import XdsResource
from reconciler.validation import ValidationMemo

FileKey = tuple[str, bytes, bool]  # path, raw bytes, lenient
RouteKey = tuple[Same, int, str, tuple[tuple[tuple[str, str], ...], str], bool]  # VS, port, gateway, proxy, TLS
VirtualHostKey = tuple[str, int, bool, tuple[Same, ...]]  # host, port, require TLS, each VS's routes
# A Service is made from its ServiceEntry alone, a ResolvedDestinationRule from its sources (config.resolve).
ServiceKey = tuple[str, Same, tuple[Same, ...]]  # host, ServiceEntry, the DestinationRule's sources
# name, port, redirects, each server (resolve hands back the very same BoundServer while none of its
# VirtualServices changed) and each server's proxy (labels, namespace)
RouteConfigKey = tuple[str, int, bool, tuple[Same, ...], tuple[Hashable, ...]]
# Besides its own VirtualService, a VS's routes read these kinds (cluster names, ports, hash policies).
ROUTE_INPUT_KINDS = frozenset({"ServiceEntry", "DestinationRule"})


@dataclass(frozen=True)
class _Used:
    """The entries of the route and virtual-host tables one route configuration was built from."""

    routes: dict[RouteKey, tuple[rc.Route, ...]]
    virtual_hosts: dict[VirtualHostKey, bytes]


class BuildCache:
    """What the daemon keeps between revisions and hands to every `pipeline.build`."""

    def __init__(self) -> None:
        self.files: Memo[FileKey, tuple[tuple[Resource, ...], tuple[Finding, ...]]] = Memo()
        self.resolve = ResolveMemo()  # resolve renews it
        self.validation = ValidationMemo()  # validate ages it
        self.routes: Memo[RouteKey, tuple[rc.Route, ...]] = Memo()
        self.virtual_hosts: Memo[VirtualHostKey, bytes] = Memo()
        self.service_clusters: Memo[ServiceKey, tuple[XdsResource, ...]] = Memo()
        self.route_configs: Memo[RouteConfigKey, tuple[BuiltRouteConfig, _Used]] = Memo()
        self._used: _Used | None = None  # while a route configuration builds: what it asks the finer tables
        self.translate_memos = TranslateMemos(self.http_routes, self.virtual_host, self.clusters_of, self.route_config)
        # Rather than track which services and destination rules each VS's routes read, routes are kept
        # only while all of them are unchanged.
        self._route_inputs: tuple[Same, ...] = ()

    def start_build(self) -> None:
        for memo in (self.files, self.routes, self.virtual_hosts, self.service_clusters, self.route_configs):
            memo.age()

    def loaded(self, resources: Sequence[Resource]) -> None:
        """This build's resources: routes computed from other services or destination rules are dropped."""
        inputs = tuple(Same(r) for r in resources if r.kind in ROUTE_INPUT_KINDS)
        if inputs != self._route_inputs:
            self.routes.clear()
            self.route_configs.clear()
            self._route_inputs = inputs

    # The cached forms of the pipeline's per-item steps, with the signatures the stages take.

    def load_file(self, path: str, raw: bytes, lenient: bool) -> tuple[tuple[Resource, ...], tuple[Finding, ...]]:
        def load() -> tuple[tuple[Resource, ...], tuple[Finding, ...]]:
            resources, findings = load_file(path, raw, lenient)
            return tuple(resources), tuple(findings)

        return self.files.get((path, raw, lenient), load)

    def http_routes(
        self, config: ResolvedConfig, vs: ResolvedVirtualService, port: int, gateway: str, proxy: Proxy, is_tls: bool
    ) -> tuple[rc.Route, ...]:
        key = (Same(vs), port, gateway, proxy.key, is_tls)
        routes = self.routes.get(key, lambda: vs_routes(config, vs, port, gateway, proxy, is_tls))
        if self._used is not None:
            self._used.routes[key] = routes
        return routes

    def virtual_host(self, plan: VirtualHostPlan) -> bytes:
        # The route tuples come from `http_routes`: the same objects exactly when their inputs are unchanged.
        key = (plan.host, plan.port, plan.require_tls, tuple(Same(routes) for routes in plan.routes))
        entry = self.virtual_hosts.get(key, lambda: virtual_host_entry(plan))
        if self._used is not None:
            self._used.virtual_hosts[key] = entry
        return entry

    def route_config(
        self, config: ResolvedConfig, request: RouteConfigRequest, build: Callable[[], BuiltRouteConfig]
    ) -> BuiltRouteConfig:
        """A whole route configuration, kept while its servers are the very same objects: a one-VirtualService
        change then rebuilds only the route configurations of the servers that VirtualService is bound to.

        What its build asked `http_routes` and `virtual_host` for is kept with it and renewed in those tables
        whenever it is used, so that they still hold it when one of its VirtualServices changes later."""

        def build_recording() -> tuple[BuiltRouteConfig, _Used]:
            self._used = _Used({}, {})
            try:
                return build(), self._used
            finally:
                self._used = None

        servers = tuple(Same(bound) for bound in request.servers)
        proxies = tuple(proxy_of(config, bound).key for bound in request.servers)
        built, used = self.route_configs.get(
            (request.name, request.port, request.redirects, servers, proxies), build_recording
        )
        self.routes.keep(used.routes)
        self.virtual_hosts.keep(used.virtual_hosts)
        return built

    def clusters_of(self, service: Service, rule: ResolvedDestinationRule | None) -> tuple[XdsResource, ...]:
        key = (service.host, Same(service.source), tuple(Same(s) for s in rule.sources) if rule else ())
        return self.service_clusters.get(key, lambda: encode_service_clusters(service, rule))
