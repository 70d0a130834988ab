"""Route configurations built host by host, and renewed host by host from the build of the revision before.

A route configuration holds one virtual host per host of its servers (routes.py: what goes in one). Built whole,
it keeps what it was built from (`RouteConfigBuild`): each host's routes and encoded entry, and the body's parts.
The next revision's build of the same route configuration re-plans only the hosts whose VirtualServices
changed: `config.resolve_memo` hands back the very same BoundServer parts for what did not change (each host's
tuple of VirtualServices), so an identity diff of the servers' hosts names the changed ones. Their entries are
spliced into the body's parts and everything else is reused byte for byte; the result is exactly what building
it whole gives (tests/unit/test_incremental_build.py).
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import compress
from typing import NamedTuple

from envoy.config.route.v3 import route_components_pb2 as rc

from reconciler.config.model import (
    BoundServer,
    ResolvedConfig,
    ResolvedDestinationRule,
    ResolvedVirtualService,
    Service,
)
from reconciler.diagnostics import Finding
from reconciler.memo import Same
from reconciler.translate.listener_redirect import redirected_hosts, shared_host_warnings
from reconciler.translate.routes import (
    HostBinding,
    ServerContext,
    VirtualHostPlan,
    host_routes,
    route_config_resource,
    server_context,
    virtual_host_entry,
    vs_routes,
)
from reconciler.translate.snapshot import XdsResource, field_digest

RouteKey = tuple[Same, Hashable]  # a VirtualService, and the context of the server it is bound to (its key)
BuiltRouteConfig = tuple[XdsResource, tuple[Finding, ...]]  # with the findings of its https redirects


@dataclass(frozen=True)
class RouteConfigRequest:
    """One route configuration of a fleet's port: its name, the servers whose virtual hosts it holds, and whether
    their `tls.httpsRedirect` applies (plain-text servers)."""

    fleet: str
    name: str
    port: int
    servers: Sequence[BoundServer]
    redirects: bool


# Tuples, not dataclasses: a first build makes one of each per host, thousands.
class VirtualHostBuild(NamedTuple):
    plan: VirtualHostPlan
    entry: bytes  # `virtual_host_entry(plan)`
    digest: bytes  # the entry's `field_digest`


class HostBuild(NamedTuple):
    """One host: what each of its VirtualServices routes there, and its virtual host (none: no routes, no redirect)."""

    routes: Sequence[tuple[RouteKey, Sequence[rc.Route]]]
    virtual_host: VirtualHostBuild | None


@dataclass(frozen=True)
class RouteConfigBuild:
    request: RouteConfigRequest
    services: Mapping[str, Service]  # the config's, which its routes read besides the VirtualServices
    destination_rules: Mapping[str, ResolvedDestinationRule]
    contexts: tuple[ServerContext, ...]
    positions: tuple[dict[str, int], ...]  # per server: each host's index in its virtual_hosts
    redirected: frozenset[str]
    hosts: dict[str, HostBuild]  # every host of every server, and every redirected host
    order: list[str]  # the hosts with a virtual host, sorted: their entries are the body's parts but the first/last
    digests: list[bytes]  # their entries' digests, in the same order
    resource: XdsResource
    findings: tuple[Finding, ...]

    @property
    def built(self) -> BuiltRouteConfig:
        return self.resource, self.findings


def build_route_config(config: ResolvedConfig, request: RouteConfigRequest) -> BuiltRouteConfig:
    return renew_route_config(config, request, None).built


def renew_route_config(
    config: ResolvedConfig, request: RouteConfigRequest, before: RouteConfigBuild | None
) -> RouteConfigBuild:
    """The route configuration of `request`, reusing what `before` (the same route configuration's build for an
    earlier revision) computed from what did not change since."""
    if before is None or not _reusable(before, config, request):
        return _build(config, request, None)
    return _patched(config, request, before) or _build(config, request, before)


def _reusable(before: RouteConfigBuild, config: ResolvedConfig, request: RouteConfigRequest) -> bool:
    """Whether the routes `before` holds are what its VirtualServices route for `request`: the same port, and the
    same inputs besides the VirtualServices (routes read services' ports, rules' subsets and hash policies).
    Resolve hands back the very same services and rules while no ServiceEntry or DestinationRule changed."""
    return (
        before.request.port == request.port
        and before.services is config.services
        and before.destination_rules is config.destination_rules
    )


def _build(config: ResolvedConfig, request: RouteConfigRequest, before: RouteConfigBuild | None) -> RouteConfigBuild:
    """Whole; the routes and entries `before` holds for the same VirtualServices and servers are reused."""
    servers = tuple(request.servers)
    contexts = tuple(server_context(config, bound) for bound in servers)
    positions = tuple({host: i for i, (host, _) in enumerate(bound.virtual_hosts)} for bound in servers)
    redirected = redirected_hosts(servers) if request.redirects else {}
    known: dict[RouteKey, Sequence[rc.Route]] = {}
    for host_build in before.hosts.values() if before is not None else ():
        known.update(host_build.routes)
    bindings: dict[str, list[HostBinding]] = {host: [] for host in redirected}
    for bound, context in zip(servers, contexts, strict=True):
        for host, virtual_services in bound.virtual_hosts:
            bindings.setdefault(host, []).append((context, virtual_services))
    builder = _HostBuilder(config, request.port, known)
    hosts: dict[str, HostBuild] = {}
    for host in sorted(bindings):
        earlier = before.hosts.get(host) if before is not None else None
        hosts[host] = builder.build(host, bindings[host], host in redirected, earlier)
    virtual_hosts = {host: vhost for host, host_build in hosts.items() if (vhost := host_build.virtual_host)}
    order = list(virtual_hosts)
    digests = [vhost.digest for vhost in virtual_hosts.values()]
    entries = [vhost.entry for vhost in virtual_hosts.values()]
    resource = route_config_resource(request.name, request.port, entries, digests)
    findings = tuple(shared_host_warnings(servers, redirected))
    return RouteConfigBuild(
        request,
        config.services,
        config.destination_rules,
        contexts,
        positions,
        frozenset(redirected),
        hosts,
        order,
        digests,
        resource,
        findings,
    )


def _patched(config: ResolvedConfig, request: RouteConfigRequest, before: RouteConfigBuild) -> RouteConfigBuild | None:
    """`before` with the hosts whose VirtualServices changed built again, or None when more than those changed
    (other servers, other hosts, another proxy): what the redirects and their findings read stays as it was."""
    earlier = before.request
    if (request.name, request.redirects) != (earlier.name, earlier.redirects):
        return None
    servers = tuple(request.servers)
    changed = _changed_hosts(servers, tuple(earlier.servers))
    if changed is None:
        return None
    contexts = tuple(server_context(config, bound) for bound in servers)
    if contexts != before.contexts:
        return None
    if not changed:
        return replace(before, request=request)
    order, digests = list(before.order), list(before.digests)
    entries = list(before.resource.parts[1:-1]) if order else []  # with no host, the parts hold the 404 host
    renewed: dict[str, HostBuild] = {}
    touched = False  # whether any entry differs from before's
    for host in changed:
        earlier_host = before.hosts[host]
        bindings = _bindings(host, servers, contexts, before.positions)
        builder = _HostBuilder(config, request.port, dict(earlier_host.routes))
        renewed[host] = host_build = builder.build(host, bindings, host in before.redirected, earlier_host)
        index = bisect_left(order, host)
        present = index < len(order) and order[index] == host
        vhost = host_build.virtual_host
        if vhost is None:
            if present:
                del order[index], entries[index], digests[index]
                touched = True
        elif not present:
            order.insert(index, host)
            entries.insert(index, vhost.entry)
            digests.insert(index, vhost.digest)
            touched = True
        elif entries[index] != vhost.entry:
            entries[index], digests[index] = vhost.entry, vhost.digest
            touched = True
    hosts = {**before.hosts, **renewed}
    if not touched:
        return replace(before, request=request, hosts=hosts)
    resource = route_config_resource(request.name, request.port, entries, digests)
    return replace(before, request=request, hosts=hosts, order=order, digests=digests, resource=resource)


def _changed_hosts(servers: tuple[BoundServer, ...], earlier: tuple[BoundServer, ...]) -> list[str] | None:
    """The hosts whose VirtualServices are other objects than `earlier`'s, when nothing else of the servers
    changed (same gateways and servers, same hosts in the same places); else None."""
    if len(servers) != len(earlier):
        return None
    changed: dict[str, None] = {}  # in order, a host of several servers once
    for bound, before in zip(servers, earlier, strict=True):
        if bound is before:
            continue
        if bound.gateway is not before.gateway or bound.server is not before.server or bound.index != before.index:
            return None
        hosts, hosts_before = bound.virtual_hosts, before.virtual_hosts
        if len(hosts) != len(hosts_before):
            return None
        for i in compress(range(len(hosts)), map(operator.is_not, hosts, hosts_before)):
            if hosts[i][0] != hosts_before[i][0]:
                return None
            changed[hosts[i][0]] = None
    return list(changed)


def _bindings(
    host: str,
    servers: tuple[BoundServer, ...],
    contexts: tuple[ServerContext, ...],
    positions: tuple[dict[str, int], ...],
) -> list[HostBinding]:
    """The VirtualServices of `host` on each server that has it, in server order."""
    return [
        (context, bound.virtual_hosts[by_host[host]][1])
        for bound, context, by_host in zip(servers, contexts, positions, strict=True)
        if host in by_host
    ]


class _HostBuilder:
    """Builds hosts of one route configuration; a VirtualService's routes in `known` (what an earlier build
    recorded) are reused, and an earlier build's entry of a host whose routes are all reused."""

    def __init__(self, config: ResolvedConfig, port: int, known: Mapping[RouteKey, Sequence[rc.Route]]) -> None:
        self.config, self.port, self.known = config, port, known
        self._used: list[tuple[RouteKey, Sequence[rc.Route]]] = []  # the routes the host being built asked for

    def build(self, host: str, bindings: list[HostBinding], redirect: bool, before: HostBuild | None) -> HostBuild:
        used: list[tuple[RouteKey, Sequence[rc.Route]]] = []
        self._used = used
        routes = host_routes(bindings, self._routes_of)
        if not routes and not redirect:
            return HostBuild(used, None)
        plan = VirtualHostPlan(host, self.port, routes, require_tls=redirect)
        earlier = before.virtual_host if before is not None else None
        if earlier is not None and _same_routes(earlier.plan, plan):
            return HostBuild(used, earlier)
        entry = virtual_host_entry(plan)
        return HostBuild(used, VirtualHostBuild(plan, entry, field_digest(entry)))

    def _routes_of(self, vs: ResolvedVirtualService, context: ServerContext) -> Sequence[rc.Route]:
        key = (Same(vs), context.key)
        routes = self.known.get(key) if self.known else None  # a first build has none: spare hashing the key
        if routes is None:
            routes = vs_routes(self.config, vs, self.port, context.gateway, context.proxy, context.is_tls)
        self._used.append((key, routes))
        return routes


def _same_routes(before: VirtualHostPlan, plan: VirtualHostPlan) -> bool:
    """Whether `plan` encodes as `before` did: the very same route tuples (routes are never changed once built)."""
    return (
        before.require_tls == plan.require_tls
        and len(before.routes) == len(plan.routes)
        and all(map(operator.is_, before.routes, plan.routes))
    )
