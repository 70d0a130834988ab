"""Which VirtualService `tcp` and `tls` rules a TCP, TLS or passthrough server uses (istiod's rules).

istiod (`buildGatewayNetworkFiltersFromTCPRoutes` / `...FromTLSRoutes`): a VirtualService applies to a
server when it is bound to the server's Gateway and one of its hosts matches a server host; on gateways
only a match's `port` and `gateways` count. A TCP server (or a terminating TLS server) proxies to the first
VirtualService, in VirtualService order, with a matching `tcp` rule, and ignores every later one; a
PASSTHROUGH server gets one filter chain per matching `tls[].match[]`, keyed by its `sniHosts`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from reconciler.config import hosts
from reconciler.config.model import BoundServer, ResolvedConfig, ResolvedVirtualService
from reconciler.config.resolve import resolve_gateway_name
from reconciler.config.servers import describe
from reconciler.diagnostics import Finding, Location, Severity
from reconciler.manifests.model import RouteDestination


@dataclass(frozen=True)
class L4Route:
    """One `tcp[]` rule, or one `tls[].match[]` entry, chosen for a server."""

    vs: ResolvedVirtualService
    path: tuple[str | int, ...]  # where the rule (or match) sits in the VirtualService
    destinations: Sequence[RouteDestination]
    sni_hosts: tuple[str, ...] = ()

    @property
    def location(self) -> Location:
        return self.vs.resource.locate(*self.path)


def attached_virtual_services(config: ResolvedConfig, bound: BoundServer) -> list[ResolvedVirtualService]:
    """The VirtualServices whose hosts meet the server's, in VirtualService order."""
    refs = {vs.ref for _, attached in bound.virtual_hosts for vs in attached}
    return [vs for vs in config.virtual_services if vs.ref in refs]


def tcp_route(config: ResolvedConfig, bound: BoundServer, findings: list[Finding]) -> L4Route | None:
    """The first matching `tcp` rule; later VirtualServices that also match are reported as shadowed."""
    chosen: L4Route | None = None
    for vs in attached_virtual_services(config, bound):
        for index, rule in enumerate(vs.spec.tcp):
            matches = [(m.port, m.gateways) for m in rule.match]
            if matches and not any(_applies(port, gateways, vs, bound) for port, gateways in matches):
                continue
            if chosen is None:
                chosen = L4Route(vs, ("spec", "tcp", index), rule.route)
            elif chosen.vs.ref != vs.ref:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "tcp-route-shadowed",
                        f"{describe(bound)} already proxies TCP by {chosen.vs.resource.ref} ({chosen.location}); "
                        "a TCP server uses only the first matching VirtualService, so this rule never applies",
                        vs.resource.locate("spec", "tcp", index),
                        vs.resource.ref,
                        (chosen.location,),
                    )
                )
            break
    return chosen


def passthrough_routes(config: ResolvedConfig, bound: BoundServer) -> Iterator[L4Route]:
    """Every `tls[].match[]` that applies to a PASSTHROUGH server, in order; each becomes a filter chain."""
    for vs in attached_virtual_services(config, bound):
        for index, rule in enumerate(vs.spec.tls):
            for match_index, match in enumerate(rule.match):
                if _applies(match.port, match.gateways, vs, bound):
                    sni = tuple(sorted({hosts.normalize_host(h) for h in match.sni_hosts}))
                    yield L4Route(vs, ("spec", "tls", index, "match", match_index), rule.route, sni)


def _applies(port: int, gateways: list[str], vs: ResolvedVirtualService, bound: BoundServer) -> bool:
    if port and port != bound.server.port.number:
        return False
    return not gateways or bound.gateway.ref in {resolve_gateway_name(g, vs.namespace) for g in gateways}
