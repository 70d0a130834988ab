"""istiod's `mergeGateways`: the servers of every Gateway of a fleet, grouped into one listener per (bind, port).

Plain-text HTTP servers (HTTP, HTTP2, GRPC) share a port and one route config; HTTPS and TLS servers share
a port as separate filter chains told apart by SNI; an opaque TCP server owns its port. istiod drops what
does not fit (a protocol clash, a second TCP server, a TLS host claimed twice) with only a log line and
which one survives depends on creation order. Here each is an error that names both servers; most are
already reported by `validation.analysis`, and the merge drops the later server either way, so the
listener it builds is always one Envoy accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.config.model import BoundServer, FleetConfig
from reconciler.diagnostics import Finding, Severity
from reconciler.translate.listener_servers import (
    PortKind,
    describe,
    kind_of,
    protocol_of,
    server_finding,
    server_hostnames,
    server_location,
    tls_mode,
)

UNSUPPORTED_TLS_MODES = {
    "ISTIO_MUTUAL": "it needs Istio's mesh identity, which fleets without a mesh do not have",
    "AUTO_PASSTHROUGH": "it routes by Istio's mesh-internal SNI names, which only a mesh produces",
}


@dataclass
class PortServers:
    """The servers one listener serves, in fleet order (Gateways by namespace/name, then server index)."""

    bind: str
    port: int
    kind: PortKind
    servers: list[BoundServer] = field(default_factory=list)
    # For TLS ports: which server claimed each SNI name, so a second claim is caught here, not by Envoy.
    sni_owners: dict[str, BoundServer] = field(default_factory=dict)


def merge_servers(fleet: FleetConfig, findings: list[Finding]) -> list[PortServers]:
    ports: dict[tuple[str, int], PortServers] = {}
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
        if kind is PortKind.TLS and not _claim_sni(fleet.name, group, bound, findings):
            continue
        group.servers.append(bound)
    return [ports[key] for key in sorted(ports)]


def _checked_kind(bound: BoundServer, findings: list[Finding]) -> PortKind | None:
    """The server's kind, or None (with a finding) when fleets cannot serve it.

    Istio's webhook rules (TLS settings on the right protocols, certificate sources) are checked by
    `validation.gateway` before translation runs; what is left here is what fleets do not support.
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
        return None  # `validation.gateway` reports tls-required; translation only runs without errors
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
    port = bound.server.port.number
    if group.kind is PortKind.TCP and kind_of(bound) is PortKind.TCP:
        reason = f"port {port} already proxies opaque TCP for {describe(first)}; a TCP port has room for one server"
    else:
        reason = (
            f"port {port} already serves {group.kind} for {describe(first)}; "
            f"a {protocol_of(bound)} server cannot share it"
        )
    return server_finding(
        bound,
        Severity.ERROR,
        "protocol-conflict",
        f"in fleet {fleet!r}, {reason} (istiod would silently drop one of the two). Use another port or bind",
        "port",
        related=(server_location(first),),
    )


def _claim_sni(fleet: str, group: PortServers, bound: BoundServer, findings: list[Finding]) -> bool:
    names = server_hostnames(bound)
    taken = [name for name in names if name in group.sni_owners]
    if taken:
        owner = group.sni_owners[taken[0]]
        findings.append(
            server_finding(
                bound,
                Severity.ERROR,
                "duplicate-tls-host",
                f"in fleet {fleet!r}, host {taken[0]!r} on port {bound.server.port.number} is already served by "
                f"{describe(owner)}; two TLS servers on one port need distinct hosts (SNI), and istiod would "
                "silently drop this one",
                "hosts",
                related=(server_location(owner, "hosts"),),
            )
        )
        return False
    group.sni_owners.update(dict.fromkeys(names, bound))
    return True
