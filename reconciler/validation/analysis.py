"""Cross-resource analysis: what istiod merges, drops or ignores silently when resources meet in a fleet.

`istioctl analyze` covers some of this for the mesh only; here every check is per fleet and per listener
(bind, port), and every finding names all the places involved (`Finding.related`). What does not fit on a
listener (protocol clashes, hosts and SNI names claimed twice) comes from the listener plan translation
builds (`config.listeners`), so validation reports exactly what translation would leave out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress
from operator import itemgetter

from reconciler.config import hosts
from reconciler.config.listeners import plan_listeners
from reconciler.config.model import BoundServer, ResolvedConfig, ResolvedVirtualService
from reconciler.config.resolve import MESH
from reconciler.diagnostics import Finding, Location, Severity
from reconciler.manifests.model import HTTP_PROTOCOLS, GatewaySpec, Resource, VirtualServiceSpec
from reconciler.validation.common import Path, finding_at
from reconciler.validation.index import InputName, RepoIndex, delegate_input, gateway_input
from reconciler.validation.match_analysis import is_catch_all

VirtualHost = tuple[str, tuple[ResolvedVirtualService, ...]]  # a host of a server, with the VSs that route it
SharedHosts = Callable[[BoundServer], Sequence[VirtualHost]]
_SEVERAL, _ROUTED_BY = (1).__lt__, itemgetter(1)


def shared_virtual_hosts(bound: BoundServer) -> tuple[VirtualHost, ...]:
    """The virtual hosts of an HTTP or HTTPS server that several VirtualServices route (the others cannot clash)."""
    if not may_share_hosts(bound):
        return ()
    # Filtered at C speed: a server may have thousands of hosts, and this runs whenever one of its VSs changes.
    return tuple(compress(bound.virtual_hosts, routed_by_several(bound.virtual_hosts)))


def may_share_hosts(bound: BoundServer) -> bool:
    """Whether VirtualServices on one host of this server merge (HTTP), so that they can clash."""
    return bound.server.port.protocol in HTTP_PROTOCOLS or bound.server.port.protocol == "HTTPS"


def routed_by_several(virtual_hosts: Iterable[VirtualHost]) -> Iterator[bool]:
    """Per virtual host, at C speed: whether several VirtualServices route it."""
    return map(_SEVERAL, map(len, map(_ROUTED_BY, virtual_hosts)))


def analyze(
    config: ResolvedConfig,
    bindings: Iterable[Finding],
    delegates: Iterable[Finding],
    shared_hosts: SharedHosts = shared_virtual_hosts,
) -> list[Finding]:
    """`bindings` and `delegates`: what `check_bindings` and `check_delegates` found for each VirtualService;
    `shared_hosts`: `shared_virtual_hosts`, or a cache of it."""
    findings = [*bindings, *delegates]
    for fleet in config.fleets.values():
        if not fleet.gateways:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "fleet-without-gateway",
                    f"no Gateway selects fleet {fleet.name!r} (selector {dict(fleet.spec.selector)}); its Envoys "
                    "get no listeners. Give a Gateway a spec.selector that is a subset of these labels",
                    fleet.resource.location,
                    fleet.resource.ref,
                )
            )
        findings.extend(plan_listeners(config, fleet).findings)
    findings.extend(_host_conflicts(config, shared_hosts))
    return _unique(findings)


def check_bindings(vs: ResolvedVirtualService, index: RepoIndex) -> list[Finding]:
    """How one VirtualService fits the Gateways it binds to."""
    findings = []
    spec: VirtualServiceSpec = vs.resource.spec
    if spec.hosts and vs.gateways == (MESH,):
        findings.append(
            finding_at(
                vs.resource,
                ("spec", "gateways") if spec.gateways else ("spec",),
                Severity.WARNING,
                "vs-without-gateway",
                "this VirtualService binds only to the mesh, which no fleet serves; list its Gateways in spec.gateways",
            )
        )
    bound = [index.gateways[g] for g in vs.gateways if g in index.gateways]
    for gateway in bound:
        findings.extend(_hosts_outside_gateway(vs, gateway))
    findings.extend(_unused_match_ports(vs, bound))
    return findings


def bindings_read(vs: ResolvedVirtualService) -> Iterator[InputName]:
    """What `check_bindings` looks up besides the VirtualService itself."""
    return (gateway_input(g) for g in vs.gateways)


def _hosts_outside_gateway(vs: ResolvedVirtualService, gateway: Resource) -> Iterator[Finding]:
    spec: GatewaySpec = gateway.spec
    server_hosts = [_server_host(h, gateway.namespace) for s in spec.servers for h in s.hosts]
    visible = hosts.names_for_namespace(server_hosts, vs.namespace)
    for i, host in enumerate(vs.hosts):
        if not any(hosts.matches(host, server_host) for server_host in visible):
            yield finding_at(
                vs.resource,
                ("spec", "hosts", i),
                Severity.WARNING,
                "vs-host-not-in-gateway",
                f"host {host!r} matches no server host of Gateway {gateway.namespace}/{gateway.name} visible to "
                f"namespace {vs.namespace!r} ({', '.join(visible) or 'none'}); requests for it get 404",
                [gateway.location],
            )


def _server_host(raw: str, gateway_namespace: str) -> str:
    namespace, host = hosts.split_namespaced_host(hosts.normalize_host(raw), gateway_namespace)
    return host if namespace == hosts.ANY_NAMESPACE else f"{namespace}/{host}"


def _unused_match_ports(vs: ResolvedVirtualService, gateways: list[Resource]) -> Iterator[Finding]:
    if not gateways:
        return
    ports = {s.port.number for g in gateways for s in g.spec.servers}
    for i, rule in enumerate(vs.spec.http):
        for j, match in enumerate(rule.match):
            if match.port and match.port not in ports:
                yield finding_at(
                    vs.resource,
                    ("spec", "http", i, "match", j, "port"),
                    Severity.WARNING,
                    "match-port-unused",
                    f"no server of this VirtualService's gateways listens on port {match.port}; the match never "
                    f"applies (ports: {', '.join(str(p) for p in sorted(ports))})",
                )
            if match.source_labels:
                yield finding_at(
                    vs.resource,
                    ("spec", "http", i, "match", j, "sourceLabels"),
                    Severity.WARNING,
                    "source-labels-on-gateway",
                    "on a gateway, sourceLabels are compared with the gateway's own labels, so this match "
                    "usually never applies; remove sourceLabels",
                )


def check_delegates(vs: ResolvedVirtualService, index: RepoIndex) -> list[Finding]:
    return [
        finding_at(
            vs.resource,
            ("spec", "http", i, "delegate"),
            Severity.ERROR,
            "delegate-not-found",
            f"the delegate VirtualService {target} does not exist (a delegate is a VirtualService without hosts)",
        )
        for i, target in _delegate_targets(vs)
        if target not in index.delegates
    ]


def delegates_read(vs: ResolvedVirtualService) -> Iterator[InputName]:
    """What `check_delegates` looks up besides the VirtualService itself."""
    return (delegate_input(target) for _, target in _delegate_targets(vs))


def _delegate_targets(vs: ResolvedVirtualService) -> Iterator[tuple[int, str]]:
    for i, rule in enumerate(vs.spec.http):
        if rule.delegate is not None:
            yield i, f"{rule.delegate.namespace or vs.namespace}/{rule.delegate.name}"


def _host_conflicts(config: ResolvedConfig, shared_hosts: SharedHosts) -> Iterator[Finding]:
    """Several VirtualServices on one host of one gateway: merged in a fixed order; say which, and what it hides."""
    places: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    members: dict[tuple[str, tuple[str, ...]], tuple[ResolvedVirtualService, ...]] = {}
    for fleet in config.fleets.values():
        for bound in fleet.servers:
            for host, virtual_services in shared_hosts(bound):
                key = (host, tuple(vs.ref for vs in virtual_services))
                members[key] = virtual_services
                where = f"{fleet.name}:{bound.server.port.number}"
                if where not in places[key]:
                    places[key].append(where)
    for key, virtual_services in sorted(members.items()):
        host = key[0]
        order = ", ".join(vs.ref for vs in virtual_services)
        related = [_host_location(vs, host) for vs in virtual_services[:-1]]
        yield finding_at(
            virtual_services[-1].resource,
            _host_path(virtual_services[-1], host),
            Severity.WARNING,
            "vs-host-conflict",
            f"host {host!r} is routed by {len(virtual_services)} VirtualServices (on {', '.join(places[key])}); "
            f"their rules are merged in this order: {order}, then every catch-all rule moves last. Put them in "
            "one VirtualService to make the order explicit",
            related,
        )
        yield from _shadowed_catch_alls(host, virtual_services)


def _shadowed_catch_alls(host: str, virtual_services: tuple[ResolvedVirtualService, ...]) -> Iterator[Finding]:
    winner: ResolvedVirtualService | None = None
    for vs in virtual_services:
        for i, rule in enumerate(vs.spec.http):
            if not any(is_catch_all(m) for m in rule.match) and rule.match:
                continue
            if winner is None:
                winner = vs
            elif winner is not vs:
                yield finding_at(
                    vs.resource,
                    ("spec", "http", i),
                    Severity.WARNING,
                    "unreachable-rule",
                    f"on host {host!r} this catch-all rule is never used: the catch-all of VirtualService "
                    f"{winner.ref}, merged earlier, takes every request first",
                    [winner.resource.location],
                )
            break


def _host_path(vs: ResolvedVirtualService, host: str) -> Path:
    index = next((i for i, h in enumerate(vs.hosts) if hosts.matches(h, host)), None)
    return ("spec", "hosts", index) if index is not None else ("spec", "hosts")


def _host_location(vs: ResolvedVirtualService, host: str) -> Location:
    return vs.resource.locate(*_host_path(vs, host))


def _unique(findings: list[Finding]) -> list[Finding]:
    """A problem reached twice (through two servers of one listener, or two fleets of one Gateway) is reported once."""
    seen: set[tuple[str, str, Location]] = set()
    out = []
    for finding in findings:
        key = (finding.code, finding.message, finding.location)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out
