"""istiod's `mergeGateways` as a plan: the listeners of a fleet, the servers each one serves and, on TLS and
TCP listeners, the filter chain that claims each SNI name.

Plain-text HTTP servers (HTTP, HTTP2, GRPC) share a port and one route config; HTTPS and TLS servers share
a port as separate filter chains told apart by SNI; an opaque TCP server owns its port. istiod drops what
does not fit (a protocol clash, a second TCP server, a TLS host or an SNI claimed twice) with only a log
line, and which one survives depends on creation order. The plan leaves the later one out and says so in a
finding that names both places. Validation reports the plan's findings (`validation.analysis`); translation
builds the plan and reports none of them again, so every listener Envoy gets is one it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.config.l4_routes import L4Route, passthrough_routes, tcp_route
from reconciler.config.model import BoundServer, FleetConfig, ResolvedConfig
from reconciler.config.servers import (
    PortKind,
    describe,
    is_https_terminated,
    kind_of,
    protocol_of,
    server_finding,
    server_hostname,
    server_hostnames,
    server_location,
    sni_match,
    terminates_tls,
    tls_mode,
)
from reconciler.diagnostics import Finding, Location, Severity

UNSUPPORTED_TLS_MODES = {
    "ISTIO_MUTUAL": "it needs Istio's mesh identity, which fleets without a mesh do not have",
    "AUTO_PASSTHROUGH": "it routes by Istio's mesh-internal SNI names, which only a mesh produces",
}
MATCH_ALL = "*"  # the claim of a chain without server_names


@dataclass(frozen=True)
class Chain:
    """One filter chain of a TLS or TCP listener, for one server (or one `tls` match of a passthrough server)."""

    server: BoundServer
    names: tuple[str, ...]  # the SNI names it matches; none: every SNI
    route: L4Route | None = None  # the `tcp` rule or `tls` match it proxies to; None: an HTTPS server's own routes

    @property
    def is_passthrough(self) -> bool:
        return self.route is not None and kind_of(self.server) is PortKind.TLS and not terminates_tls(self.server)


@dataclass
class PortServers:
    """The servers one listener serves, in fleet order (Gateways by namespace/name, then server index)."""

    bind: str
    port: int
    kind: PortKind
    servers: list[BoundServer] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)  # TLS and TCP listeners; an HTTP listener has one chain

    @property
    def label(self) -> str:
        return f"{self.bind}:{self.port}" if self.bind else str(self.port)


@dataclass(frozen=True)
class ListenerPlan:
    ports: tuple[PortServers, ...]
    findings: tuple[Finding, ...]  # what the plan leaves out, and why


def plan_listeners(config: ResolvedConfig, fleet: FleetConfig) -> ListenerPlan:
    findings: list[Finding] = []
    ports = _merge_servers(fleet, findings)
    for group in ports:
        if group.kind is not PortKind.HTTP:
            group.chains = _ChainClaims(config, fleet.name, group, findings).plan()
    return ListenerPlan(tuple(ports), tuple(findings))


# ------------------------------------------------------------------------------------------ servers → ports


def _merge_servers(fleet: FleetConfig, findings: list[Finding]) -> list[PortServers]:
    ports: dict[tuple[str, int], PortServers] = {}
    sni_owners: dict[tuple[str, int], dict[str, BoundServer]] = {}  # TLS ports: the server of each host
    for bound in fleet.servers:
        kind = _checked_kind(bound, findings)
        if kind is None:
            continue
        key = (bound.server.bind, bound.server.port.number)
        group = ports.get(key)
        if group is None:
            group = ports[key] = PortServers(bound.server.bind, bound.server.port.number, kind)
        elif group.kind is not kind or kind is PortKind.TCP:
            findings.append(_conflict(fleet.name, bound, group))
            continue
        if kind is PortKind.TLS and not _claim_hosts(fleet.name, sni_owners.setdefault(key, {}), bound, findings):
            continue
        group.servers.append(bound)
    return [ports[key] for key in sorted(ports)]


def _checked_kind(bound: BoundServer, findings: list[Finding]) -> PortKind | None:
    """The server's kind, or None (with a finding) when fleets cannot serve it.

    Istio's webhook rules (TLS settings on the right protocols, certificate sources) are checked by
    `validation.gateway`; what is left here is what fleets do not support.
    """
    kind = kind_of(bound)
    if kind is None:
        findings.append(
            server_finding(
                bound,
                Severity.WARNING,
                "unsupported-protocol",
                f"{protocol_of(bound)} servers are not supported on gateways; "
                f"port {bound.server.port.number} is skipped",
                "port",
                "protocol",
            )
        )
        return None
    if kind is PortKind.TLS and bound.server.tls is None:
        return None  # `validation.gateway` reports tls-required
    mode = tls_mode(bound)
    if mode in UNSUPPORTED_TLS_MODES:
        findings.append(
            server_finding(
                bound,
                Severity.ERROR,
                "unsupported-tls-mode",
                f"tls mode {mode} is not supported: {UNSUPPORTED_TLS_MODES[mode]}",
                "tls",
                "mode",
            )
        )
        return None
    return kind


def _conflict(fleet: str, bound: BoundServer, group: PortServers) -> Finding:
    first = group.servers[0]
    port = group.label
    if group.kind is PortKind.TCP and kind_of(bound) is PortKind.TCP:
        reason = f"port {port} already proxies opaque TCP for {describe(first)}; a TCP port has room for one server"
        path: tuple[str, ...] = ("port",)
    else:
        reason = (
            f"port {port} already serves {group.kind} for {describe(first)}; "
            f"a {protocol_of(bound)} server cannot share it"
        )
        path = ("port", "protocol")
    return server_finding(
        bound,
        Severity.ERROR,
        "protocol-conflict",
        f"in fleet {fleet!r}, {reason} (istiod would silently drop one of the two). Use another port or bind",
        *path,
        related=(server_location(first, "port"),),
    )


def _claim_hosts(fleet: str, owners: dict[str, BoundServer], bound: BoundServer, findings: list[Finding]) -> bool:
    """Whether the server's hosts are its own on this TLS port; each one another server has is an error."""
    taken = False
    for j, raw in enumerate(bound.server.hosts):
        owner = owners.get(server_hostname(bound, raw))
        if owner is None:
            continue
        taken = True
        findings.append(
            server_finding(
                bound,
                Severity.ERROR,
                "duplicate-tls-host",
                f"in fleet {fleet!r}, host {server_hostname(bound, raw)!r} on port {bound.server.port.number} is "
                f"already served by {describe(owner)}; two TLS servers on one port need distinct hosts (SNI), and "
                "istiod would silently drop this one",
                "hosts",
                j,
                related=(server_location(owner, "hosts"),),
            )
        )
    if not taken:
        owners.update(dict.fromkeys(server_hostnames(bound), bound))
    return not taken


# ------------------------------------------------------------------------------------------ filter chains


@dataclass(frozen=True)
class _Owner:
    """Who claims a chain's SNI names: a server, or one `tls[].match[]` of a VirtualService."""

    identity: tuple[str, ...]
    description: str
    location: Location
    resource: str

    @classmethod
    def of(cls, chain: Chain) -> _Owner:
        route, bound = chain.route, chain.server
        if chain.is_passthrough and route is not None:
            where = f"{route.vs.resource.ref} ({route.location})"
            return cls(("route", route.vs.ref, *map(str, route.path)), where, route.location, route.vs.resource.ref)
        identity = ("server", bound.gateway.ref, str(bound.index))
        return cls(identity, describe(bound), server_location(bound, "hosts"), bound.gateway.resource.ref)


class _ChainClaims:
    """The chains of a TLS or TCP port in server order, each SNI name claimed once so Envoy never sees a duplicate."""

    def __init__(self, config: ResolvedConfig, fleet: str, group: PortServers, findings: list[Finding]) -> None:
        self.config = config
        self.fleet = fleet
        self.group = group
        self.findings = findings
        self.chains: list[Chain] = []
        self.owners: dict[str, _Owner] = {}

    def plan(self) -> list[Chain]:
        for bound in self.group.servers:
            if is_https_terminated(bound):
                self._claim(Chain(bound, tuple(sni_match(server_hostnames(bound)))))
            elif self.group.kind is PortKind.TCP or terminates_tls(bound):
                # Opaque TCP, or TLS terminated here and then proxied as TCP (protocol TLS, SIMPLE/MUTUAL).
                route = tcp_route(self.config, bound, self.findings)
                if route is None:
                    self._no_route(bound, "tcp")
                    continue
                names = sni_match(server_hostnames(bound)) if terminates_tls(bound) else []
                self._claim(Chain(bound, tuple(names), route))
            else:
                routes = list(passthrough_routes(self.config, bound))
                if not routes:
                    self._no_route(bound, "tls")
                for passthrough in routes:
                    self._claim(Chain(bound, tuple(sni_match(list(passthrough.sni_hosts))), passthrough))
        return self.chains

    def _claim(self, chain: Chain) -> None:
        """Record which chain serves each SNI name; a second, different claim is an error, not an Envoy NACK."""
        owner = _Owner.of(chain)
        keys = chain.names or (MATCH_ALL,)
        for key in keys:
            earlier = self.owners.get(key)
            if earlier is None:
                continue
            # The same VirtualService match reached through a second server of the port is one chain, not two.
            if earlier.identity != owner.identity:
                shown = "every SNI (no server_names)" if key == MATCH_ALL else f"SNI {key!r}"
                self.findings.append(
                    Finding(
                        Severity.ERROR,
                        "duplicate-sni",
                        f"in fleet {self.fleet!r}, {shown} on port {self.group.label} is already taken by "
                        f"{earlier.description}; two filter chains cannot match one SNI (istiod drops such a TLS "
                        "route silently, or Envoy rejects the whole listener). Give each TLS server and TLS route "
                        "distinct SNI hosts",
                        owner.location,
                        owner.resource,
                        (earlier.location,),
                    )
                )
            return
        self.owners.update(dict.fromkeys(keys, owner))
        self.chains.append(chain)

    def _no_route(self, bound: BoundServer, kind: str) -> None:
        self.findings.append(
            server_finding(
                bound,
                Severity.WARNING,
                f"no-{kind}-route",
                f"no VirtualService bound to {bound.gateway.ref} has a `{kind}` route for this server's hosts and "
                f"port {bound.server.port.number}; the server accepts no connections",
            )
        )
