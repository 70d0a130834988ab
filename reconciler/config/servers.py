"""What a Gateway server is to the listener it shares: its kind, its TLS mode, its SNI names, its findings.

Validation (which servers clash) and translation (what Envoy gets) both classify servers through here.
"""

from __future__ import annotations

from enum import StrEnum

from reconciler.config import hosts
from reconciler.config.model import BoundServer
from reconciler.diagnostics import Finding, Location, Severity
from reconciler.manifests.model import HTTP_PROTOCOLS, TCP_PROTOCOLS, TERMINATING_MODES, TLS_PROTOCOLS


class PortKind(StrEnum):
    """What one (bind, port) listener carries; servers of different kinds cannot share it."""

    HTTP = "plain-text HTTP"
    TLS = "TLS (HTTPS/TLS with SNI)"
    TCP = "opaque TCP"


def protocol_of(bound: BoundServer) -> str:
    return bound.server.port.protocol.upper()


def kind_of(bound: BoundServer) -> PortKind | None:
    protocol = protocol_of(bound)
    if protocol in HTTP_PROTOCOLS:
        return PortKind.HTTP
    if protocol in TLS_PROTOCOLS:
        return PortKind.TLS
    if protocol in TCP_PROTOCOLS:
        return PortKind.TCP
    return None


def tls_mode(bound: BoundServer) -> str:
    return bound.server.tls.mode if bound.server.tls is not None else ""


def terminates_tls(bound: BoundServer) -> bool:
    return kind_of(bound) is PortKind.TLS and tls_mode(bound) in TERMINATING_MODES


def is_https_terminated(bound: BoundServer) -> bool:
    return terminates_tls(bound) and protocol_of(bound) == "HTTPS"


def https_redirects(bound: BoundServer) -> bool:
    return bound.server.tls is not None and bound.server.tls.https_redirect


def server_hostname(bound: BoundServer, raw: str) -> str:
    """One server host without its `ns/` part, lower-cased: the SNI name it stands for."""
    return hosts.normalize_host(hosts.split_namespaced_host(raw, bound.gateway.resource.namespace)[1])


def server_hostnames(bound: BoundServer) -> list[str]:
    """The server's hosts as SNI names, deduplicated and sorted (istiod's SNI hosts)."""
    return sorted({server_hostname(bound, raw) for raw in bound.server.hosts})


def sni_match(names: list[str]) -> list[str]:
    """`server_names` for a filter chain: none at all when any name is `*` (that chain matches every SNI)."""
    return [] if hosts.WILDCARD in names else sorted(set(names))


def server_location(bound: BoundServer, *path: str | int) -> Location:
    return bound.gateway.resource.locate("spec", "servers", bound.index, *path)


def describe(bound: BoundServer) -> str:
    return f"{bound.gateway.resource.ref} server {bound.index} ({server_location(bound)})"


def server_finding(
    bound: BoundServer,
    severity: Severity,
    code: str,
    message: str,
    *path: str | int,
    related: tuple[Location, ...] = (),
) -> Finding:
    return Finding(severity, code, message, server_location(bound, *path), bound.gateway.resource.ref, related)
