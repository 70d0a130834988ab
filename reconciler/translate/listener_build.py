"""One merged port (`listener_merge.PortServers`) → its Envoy listener and the route configs it names."""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.listener.v3 import listener_components_pb2
from google.protobuf.message import Message

from reconciler.config.model import BoundServer, ResolvedConfig
from reconciler.diagnostics import Finding, Location, Severity
from reconciler.translate.listener_merge import PortServers
from reconciler.translate.listener_redirect import apply_https_redirects
from reconciler.translate.listener_servers import (
    PortKind,
    describe,
    https_route_name,
    is_https_terminated,
    server_finding,
    server_hostnames,
    server_location,
    sni_match,
    terminates_tls,
)
from reconciler.translate.listeners import (
    gateway_listener,
    http_chain,
    https_chain,
    listener_name,
    tcp_chain,
)
from reconciler.translate.routes import build_route_config, route_config_name
from reconciler.translate.secrets import SecretBook
from reconciler.translate.tcp import L4Route, passthrough_routes, tcp_proxy_filter, tcp_route
from reconciler.translate.tls import downstream_tls_context

MATCH_ALL = "*"  # the registry key of a chain without server_names


@dataclass
class FleetContext:
    config: ResolvedConfig
    default_bind: str
    secrets: SecretBook
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class _ChainOwner:
    """Who asked for a filter chain: a terminating server, or one `tls[].match[]` of a VirtualService."""

    identity: tuple[str, ...]
    description: str
    location: Location
    resource: str


def build_port(context: FleetContext, group: PortServers) -> list[Message]:
    name = listener_name(group.bind, group.port)
    route_configs: list[Message] = []
    if group.kind is PortKind.HTTP:
        route_name = route_config_name(group.port, group.bind)
        route_config = build_route_config(context.config, route_name, group.port, group.servers)
        apply_https_redirects(route_config, group.servers, group.port, context.findings)
        route_configs.append(route_config)
        chains = [http_chain(f"outbound_{name}", route_name)]
    else:
        chains = _Chains(context, name).build(group, route_configs)
    if not chains:  # each server without a chain was reported (no route, or an SNI conflict)
        return []
    return [gateway_listener(name, group.bind or context.default_bind, group.port, chains), *route_configs]


class _Chains:
    """The filter chains of a TLS or TCP port, each SNI name claimed once so Envoy never sees a duplicate."""

    def __init__(self, context: FleetContext, listener: str) -> None:
        self.context = context
        self.listener = listener
        self.chains: list[listener_components_pb2.FilterChain] = []
        self.owners: dict[str, _ChainOwner] = {}

    def build(self, group: PortServers, route_configs: list[Message]) -> list[listener_components_pb2.FilterChain]:
        for bound in group.servers:
            if group.kind is PortKind.TCP:
                self._tcp_server(bound)
            elif is_https_terminated(bound):
                route_configs.extend(self._https_server(bound))
            elif terminates_tls(bound):
                self._tcp_server(bound)
            else:
                self._passthrough_server(bound)
        return self.chains

    def _https_server(self, bound: BoundServer) -> list[Message]:
        names = sni_match(server_hostnames(bound))
        if not self._claim(names, _server_owner(bound)):
            return []
        tls = downstream_tls_context(bound, self.context.secrets, self.context.findings)
        route_name = https_route_name(bound)
        stat_prefix = bound.server.name or f"outbound_{self.listener}"
        self.chains.append(https_chain(stat_prefix, route_name, names, tls))
        return [build_route_config(self.context.config, route_name, bound.server.port.number, [bound])]

    def _tcp_server(self, bound: BoundServer) -> None:
        """Opaque TCP, or TLS terminated here and then proxied as TCP (protocol TLS, SIMPLE/MUTUAL)."""
        route = tcp_route(self.context.config, bound, self.context.findings)
        if route is None:
            self._no_route(bound, "tcp")
            return
        terminating = terminates_tls(bound)
        names = sni_match(server_hostnames(bound)) if terminating else []
        if not self._claim(names, _server_owner(bound)):
            return
        tls = downstream_tls_context(bound, self.context.secrets, self.context.findings) if terminating else None
        proxy = tcp_proxy_filter(self.context.config, route, bound.server.port.number, self.context.findings)
        if proxy is not None:
            self.chains.append(tcp_chain([proxy], names, tls))

    def _passthrough_server(self, bound: BoundServer) -> None:
        routes = list(passthrough_routes(self.context.config, bound))
        if not routes:
            self._no_route(bound, "tls")
        for route in routes:
            names = sni_match(list(route.sni_hosts))
            if not self._claim(names, _route_owner(route)):
                continue
            proxy = tcp_proxy_filter(self.context.config, route, bound.server.port.number, self.context.findings)
            if proxy is not None:
                self.chains.append(tcp_chain([proxy], names))

    def _claim(self, names: list[str], owner: _ChainOwner) -> bool:
        """Record which chain serves each SNI name; a second, different claim is an error, not an Envoy NACK."""
        keys = names or [MATCH_ALL]
        for key in keys:
            earlier = self.owners.get(key)
            if earlier is None:
                continue
            # The same VirtualService match reached through a second server of the port is one chain, not two.
            if earlier.identity != owner.identity:
                shown = "every SNI (no server_names)" if key == MATCH_ALL else f"SNI {key!r}"
                self.context.findings.append(
                    Finding(
                        Severity.ERROR,
                        "duplicate-sni",
                        f"{shown} on listener {self.listener} is already taken by {earlier.description}; two filter "
                        "chains cannot match one SNI (istiod drops such a TLS route silently, or Envoy rejects the "
                        "whole listener). Give each TLS server and TLS route distinct SNI hosts",
                        owner.location,
                        owner.resource,
                        (earlier.location,),
                    )
                )
            return False
        self.owners.update(dict.fromkeys(keys, owner))
        return True

    def _no_route(self, bound: BoundServer, kind: str) -> None:
        self.context.findings.append(
            server_finding(
                bound,
                Severity.WARNING,
                f"no-{kind}-route",
                f"no VirtualService bound to {bound.gateway.ref} has a `{kind}` route for this server's hosts and "
                f"port {bound.server.port.number}; the server accepts no connections",
            )
        )


def _server_owner(bound: BoundServer) -> _ChainOwner:
    return _ChainOwner(
        ("server", bound.gateway.ref, str(bound.index)),
        describe(bound),
        server_location(bound, "hosts"),
        bound.gateway.resource.ref,
    )


def _route_owner(route: L4Route) -> _ChainOwner:
    where = f"{route.vs.resource.ref} ({route.location})"
    return _ChainOwner(("route", route.vs.ref, *map(str, route.path)), where, route.location, route.vs.resource.ref)
