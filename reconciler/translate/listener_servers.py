"""What a Gateway server is to the listener builder: its kind, its SNI names, its RDS name, its findings."""

from __future__ import annotations

from enum import StrEnum

from reconciler.config import hosts
from reconciler.config.model import BoundServer
from reconciler.diagnostics import Finding, Location, Severity

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
# istiod proxies these as opaque TCP on a gateway (their protocol filters are off by default).
TCP_PROTOCOLS = frozenset({"TCP", "MONGO", "MYSQL", "REDIS"})
TERMINATING_MODES = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"})


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


def server_hostnames(bound: BoundServer) -> list[str]:
    """The server's hosts without their `ns/` part, lower-cased, deduplicated and sorted (istiod's SNI hosts)."""
    namespace = bound.gateway.resource.namespace
    return sorted({hosts.normalize_host(hosts.split_namespaced_host(h, namespace)[1]) for h in bound.server.hosts})


def sni_match(names: list[str]) -> list[str]:
    """`server_names` for a filter chain: none at all when any name is `*` (that chain matches every SNI)."""
    return [] if hosts.WILDCARD in names else sorted(set(names))


def https_route_name(bound: BoundServer) -> str:
    """istiod's `https.<port>.<portName>.<gateway>.<namespace>[.<bind>]`: one route config per HTTPS server."""
    resource = bound.gateway.resource
    port = bound.server.port
    name = f"https.{port.number}.{port.name}.{resource.name}.{resource.namespace}"
    return name + (f".{bound.server.bind}" if bound.server.bind else "")


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
