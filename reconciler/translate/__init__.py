"""Translate a resolved fleet into the Envoy resources its members receive (pure)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from google.protobuf.message import Message

from reconciler.config.model import BoundServer, FleetConfig, ResolvedConfig
from reconciler.diagnostics import Finding, Severity
from reconciler.translate.clusters import build_clusters
from reconciler.translate.listeners import http_listener, listener_name
from reconciler.translate.routes import build_route_config, route_config_name
from reconciler.translate.snapshot import Snapshot

HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}


@dataclass(frozen=True)
class TranslateOptions:
    # The address listeners bind when a Gateway server has no `bind`. istiod binds 0.0.0.0; tests and
    # the demo bind 127.0.0.1. Listener names keep istiod's `0.0.0.0_<port>` either way.
    default_bind: str = "0.0.0.0"


@dataclass(frozen=True)
class Translation:
    snapshot: Snapshot
    findings: tuple[Finding, ...] = field(default=())


def translate_fleet(config: ResolvedConfig, fleet: str, options: TranslateOptions | None = None) -> Translation:
    options = options or TranslateOptions()
    fleet_config = config.fleets[fleet]
    findings: list[Finding] = []
    messages: list[Message] = list(build_clusters(config))
    for (bind, port), servers in sorted(_servers_by_port(fleet_config, findings).items()):
        name = listener_name(bind, port)
        route_name = route_config_name(port, bind)
        messages.append(http_listener(name, bind or options.default_bind, port, route_name))
        messages.append(build_route_config(config, route_name, port, servers))
    return Translation(Snapshot.build(messages), tuple(findings))


def _servers_by_port(fleet: FleetConfig, findings: list[Finding]) -> dict[tuple[str, int], list[BoundServer]]:
    by_port: dict[tuple[str, int], list[BoundServer]] = defaultdict(list)
    for bound in fleet.servers:
        protocol = bound.server.port.protocol.upper()
        if protocol not in HTTP_PROTOCOLS:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "unsupported-protocol",
                    f"{protocol} servers are not translated yet; port {bound.server.port.number} is skipped",
                    bound.location,
                    bound.gateway.resource.ref,
                )
            )
            continue
        by_port[(bound.server.bind, bound.server.port.number)].append(bound)
    return by_port
