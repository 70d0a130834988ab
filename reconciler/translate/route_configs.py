"""Route configurations built host by host, and renewed host by host from the build of the revision before.

A route configuration holds one virtual host per host of its servers (routes.py: what goes in one). Built whole,
it keeps what it was built from (`RouteConfigBuild`): each host's routes and encoded entry, and the body's parts.
The next revision's build of the same route configuration re-plans only the hosts whose VirtualServices
changed, and those a server gained or lost: `config.resolve_memo` hands back the very same BoundServer parts for
what did not change (each host's (host, VirtualServices) tuple), so an identity diff of the servers' hosts names
the changed ones. Their entries are spliced into the body's parts and everything else is reused byte for byte;
the result is exactly what building it whole gives (tests/unit/test_incremental_build.py,
tests/unit/test_route_config_renewal.py).
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
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
from reconciler.memo import Same, identity_changes
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
_HOST = operator.itemgetter(0)  # of a (host, VirtualServices) entry
# A renewal re-plans changed hosts one by one, each dearer than in a whole build that reuses routes (measured at 10k:
# ~11 µs against ~6 µs): with more than a quarter of the hosts changed (every one, when resolve made the servers
# anew), the whole build is about as fast, and never much slower.
WHOLE_BUILD_SHARE = 4
MIN_PATCHED = 16  # a small route configuration is renewed while no more hosts than this changed


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
        frozenset(redirected),
        hosts,
        order,
        digests,
        resource,
        findings,
    )


def _patched(config: ResolvedConfig, request: RouteConfigRequest, before: RouteConfigBuild) -> RouteConfigBuild | None:
    """`before` with the hosts whose VirtualServices changed, or that a server gained or lost, built again; or None
    when more than those changed (other servers, another proxy) or so many hosts that building it whole is faster."""
    earlier = before.request
    if (request.name, request.redirects) != (earlier.name, earlier.redirects):
        return None
    servers = tuple(request.servers)
    changes = _host_changes(servers, tuple(earlier.servers), len(before.hosts) // WHOLE_BUILD_SHARE + MIN_PATCHED)
    if changes is None:
        return None
    changed, regrouped = changes
    contexts = tuple(server_context(config, bound) for bound in servers)
    if contexts != before.contexts:
        return None
    if not changed:
        return replace(before, request=request)
    redirected, findings = before.redirected, before.findings
    if regrouped and request.redirects:  # the redirects, and the warnings about them, are made of servers' hosts
        redirects = redirected_hosts(servers)
        redirected, findings = frozenset(redirects), tuple(shared_host_warnings(servers, redirects))
    order, digests = list(before.order), list(before.digests)
    entries = list(before.resource.parts[1:-1]) if order else []  # with no host, the parts hold the 404 host
    hosts = dict(before.hosts)
    known: dict[RouteKey, Sequence[rc.Route]] = {}
    for host in changed:
        if (earlier_host := hosts.get(host)) is not None:
            known.update(earlier_host.routes)
    builder = _HostBuilder(config, request.port, known)
    touched = False  # whether any entry differs from before's
    for host in changed:
        earlier_host = hosts.pop(host, None)
        bindings = _bindings(host, servers, contexts)
        vhost = None
        if bindings or host in redirected:  # else on no server any more: no host to keep
            hosts[host] = host_build = builder.build(host, bindings, host in redirected, earlier_host)
            vhost = host_build.virtual_host
        touched |= _splice(order, entries, digests, host, vhost)
    renewed = replace(before, request=request, redirected=redirected, hosts=hosts, findings=findings)
    if not touched:
        return renewed
    resource = route_config_resource(request.name, request.port, entries, digests)
    return replace(renewed, order=order, digests=digests, resource=resource)


def _splice(
    order: list[str], entries: list[bytes], digests: list[bytes], host: str, vhost: VirtualHostBuild | None
) -> bool:
    """Put `host`'s virtual host (none: no entry) in its place among the sorted `order`; whether anything changed."""
    index = bisect_left(order, host)
    present = index < len(order) and order[index] == host
    if vhost is None:
        if present:
            del order[index], entries[index], digests[index]
        return present
    if not present:
        order.insert(index, host)
        entries.insert(index, vhost.entry)
        digests.insert(index, vhost.digest)
        return True
    if entries[index] == vhost.entry:
        return False
    entries[index], digests[index] = vhost.entry, vhost.digest
    return True


def _host_changes(
    servers: tuple[BoundServer, ...], earlier: tuple[BoundServer, ...], limit: int
) -> tuple[list[str], bool] | None:
    """The hosts whose VirtualServices are other objects than `earlier`'s or that a server gained or lost, and
    whether any server gained or lost one; None when other parts of the servers changed (gateways, servers,
    their order) or more than `limit` hosts did."""
    if len(servers) != len(earlier):
        return None
    changed: dict[str, None] = {}  # in order, a host of several servers once
    regrouped = False
    for bound, before in zip(servers, earlier, strict=True):
        if bound is before:
            continue
        if bound.gateway is not before.gateway or bound.server is not before.server or bound.index != before.index:
            return None
        added, removed = identity_changes(bound.virtual_hosts, before.virtual_hosts)  # both in host order
        gained, lost = list(map(_HOST, added)), list(map(_HOST, removed))
        regrouped = regrouped or gained != lost  # both sorted, as the servers' hosts are
        changed.update(dict.fromkeys(lost))
        changed.update(dict.fromkeys(gained))
        if len(changed) > limit:
            return None
    return list(changed), regrouped


def _bindings(host: str, servers: tuple[BoundServer, ...], contexts: tuple[ServerContext, ...]) -> list[HostBinding]:
    """The VirtualServices of `host` on each server that has it, in server order (found by bisection: resolve
    sorts a server's virtual hosts by host)."""
    bindings: list[HostBinding] = []
    for bound, context in zip(servers, contexts, strict=True):
        virtual_hosts = bound.virtual_hosts
        index = bisect_left(virtual_hosts, host, key=_HOST)
        if index < len(virtual_hosts) and virtual_hosts[index][0] == host:
            bindings.append((context, virtual_hosts[index][1]))
    return bindings


class _HostBuilder:
    """Builds hosts of one route configuration; a VirtualService's routes in `known` (what an earlier build
    recorded) are reused, and an earlier build's entry of a host whose routes are all reused. Routes it builds join
    `known`: a VirtualService of several hosts is routed once."""

    def __init__(self, config: ResolvedConfig, port: int, known: dict[RouteKey, Sequence[rc.Route]]) -> None:
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
        routes = self.known.get(key)
        if routes is None:
            routes = self.known[key] = vs_routes(
                self.config, vs, self.port, context.gateway, context.proxy, context.is_tls
            )
        self._used.append((key, routes))
        return routes


def _same_routes(before: VirtualHostPlan, plan: VirtualHostPlan) -> bool:
    """Whether `plan` encodes as `before` did: the very same route tuples (routes are never changed once built)."""
    return (
        before.require_tls == plan.require_tls
        and len(before.routes) == len(plan.routes)
        and all(map(operator.is_, before.routes, plan.routes))
    )
