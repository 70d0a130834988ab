"""One planned port (`config.listeners.PortServers`) → its Envoy listener and the route configs it names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from envoy.config.listener.v3 import listener_components_pb2

from reconciler.config.listeners import Chain, PortServers
from reconciler.config.model import BoundServer, ResolvedConfig
from reconciler.config.servers import PortKind, terminates_tls
from reconciler.diagnostics import Finding
from reconciler.translate.listeners import (
    gateway_listener,
    http_chain,
    https_chain,
    listener_name,
    tcp_chain,
)
from reconciler.translate.memos import TranslateMemos
from reconciler.translate.route_configs import RouteConfigRequest
from reconciler.translate.routes import route_config_name
from reconciler.translate.secrets import SecretBook
from reconciler.translate.snapshot import XdsResource
from reconciler.translate.tcp import tcp_proxy_filter
from reconciler.translate.tls import downstream_tls_context


@dataclass
class FleetContext:
    config: ResolvedConfig
    fleet: str
    default_bind: str
    secrets: SecretBook
    findings: list[Finding] = field(default_factory=list)
    memos: TranslateMemos = field(default_factory=TranslateMemos)

    def route_config(self, name: str, port: int, servers: Sequence[BoundServer], redirects: bool) -> XdsResource:
        request = RouteConfigRequest(self.fleet, name, port, servers, redirects)
        resource, findings = self.memos.route_configs(self.config, request)
        self.findings.extend(findings)
        return resource


def build_port(context: FleetContext, group: PortServers) -> list[XdsResource]:
    """The port's listener and the route configurations it names."""
    name = listener_name(group.bind, group.port)
    route_configs: list[XdsResource] = []
    if group.kind is PortKind.HTTP:
        route_name = route_config_name(group.port, group.bind)
        route_configs.append(context.route_config(route_name, group.port, group.servers, redirects=True))
        chains = [http_chain(f"outbound_{name}", route_name)]
    else:
        built = (_filter_chain(context, name, chain, route_configs) for chain in group.chains)
        chains = [chain for chain in built if chain is not None]
    if not chains:  # the plan has no chain for any server of the port (validation said why)
        return []
    listener = gateway_listener(name, group.bind or context.default_bind, group.port, chains)
    return [XdsResource.of(listener), *route_configs]


def _filter_chain(
    context: FleetContext, listener: str, chain: Chain, route_configs: list[XdsResource]
) -> listener_components_pb2.FilterChain | None:
    bound = chain.server
    names = list(chain.names)
    if chain.route is None:  # an HTTPS server: TLS terminated here, then its own HTTP routes
        tls = downstream_tls_context(bound, context.secrets, context.findings)
        route_name = https_route_name(bound)
        route_configs.append(context.route_config(route_name, bound.server.port.number, [bound], redirects=False))
        return https_chain(bound.server.name or f"outbound_{listener}", route_name, names, tls)
    # Opaque TCP, TLS terminated here and proxied as TCP, or a passthrough `tls` match (no TLS context).
    tls = downstream_tls_context(bound, context.secrets, context.findings) if terminates_tls(bound) else None
    proxy = tcp_proxy_filter(context.config, chain.route, bound.server.port.number)
    return tcp_chain([proxy], names, tls) if proxy is not None else None


def https_route_name(bound: BoundServer) -> str:
    """istiod's `https.<port>.<portName>.<gateway>.<namespace>[.<bind>]`: one route config per HTTPS server."""
    resource = bound.gateway.resource
    port = bound.server.port
    name = f"https.{port.number}.{port.name}.{resource.name}.{resource.namespace}"
    return name + (f".{bound.server.bind}" if bound.server.bind else "")
