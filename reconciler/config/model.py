"""The resolved model `translate` reads: names resolved, gateways bound to fleets, VSs bound to servers.

Everything Istio leaves implicit is made explicit here once: short hosts become FQDNs, gateway
references become `namespace/name`, and the order of several VirtualServices on one host is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from reconciler.config import hosts
from reconciler.diagnostics import Finding, Location
from reconciler.manifests.model import (
    DestinationRuleSpec,
    FleetSpec,
    GatewaySpec,
    Resource,
    Server,
    ServiceEntrySpec,
    ServicePort,
    VirtualServiceSpec,
    WorkloadEntry,
)


@dataclass(frozen=True)
class ResolvedGateway:
    ref: str  # namespace/name
    resource: Resource

    @property
    def spec(self) -> GatewaySpec:
        spec: GatewaySpec = self.resource.spec
        return spec


@dataclass(frozen=True)
class ResolvedVirtualService:
    """A VirtualService whose hosts, gateways and destination hosts are fully qualified."""

    resource: Resource
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]  # namespace/name, or "mesh"
    spec: VirtualServiceSpec  # destination and mirror hosts already expanded

    @property
    def namespace(self) -> str:
        return self.resource.namespace

    @cached_property
    def ref(self) -> str:  # cached: every stage asks, for each of up to tens of thousands
        return f"{self.resource.namespace}/{self.resource.name}"


@dataclass(frozen=True)
class Service:
    """One registry host, from a ServiceEntry."""

    host: str
    namespace: str
    ports: tuple[ServicePort, ...]
    resolution: str
    endpoints: tuple[WorkloadEntry, ...]
    source: Resource

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.number == number), None)

    def selected_endpoints(self, labels: Mapping[str, str]) -> list[WorkloadEntry]:
        """The endpoints a subset's labels select; a DNS entry without endpoints resolves its own host."""
        if not self.endpoints and self.resolution.startswith("DNS") and "*" not in self.host:
            return [WorkloadEntry(address=self.host)] if not labels else []
        return [e for e in self.endpoints if all(e.labels.get(k) == v for k, v in labels.items())]


@dataclass(frozen=True)
class ResolvedDestinationRule:
    host: str
    spec: DestinationRuleSpec
    sources: tuple[Resource, ...]


@dataclass(frozen=True)
class BoundServer:
    """A Gateway server in a fleet, with the VirtualServices that attach to it, per virtual host."""

    gateway: ResolvedGateway
    server: Server
    index: int  # position in the Gateway's server list, for stable naming and findings
    virtual_hosts: tuple[tuple[str, tuple[ResolvedVirtualService, ...]], ...]

    @property
    def location(self) -> Location:
        return self.gateway.resource.location


@dataclass(frozen=True)
class FleetConfig:
    name: str
    resource: Resource
    gateways: tuple[ResolvedGateway, ...]
    servers: tuple[BoundServer, ...]

    @property
    def spec(self) -> FleetSpec:
        spec: FleetSpec = self.resource.spec
        return spec


@dataclass(frozen=True)
class ResolvedConfig:
    fleets: dict[str, FleetConfig]
    services: dict[str, Service]
    destination_rules: dict[str, ResolvedDestinationRule]
    virtual_services: tuple[ResolvedVirtualService, ...]
    findings: tuple[Finding, ...] = field(default=())

    @cached_property
    def wildcard_rule_hosts(self) -> tuple[str, ...]:
        """The hosts of wildcard DestinationRules, most specific first (sorted once per build: translation asks
        for every route whose destination has no rule of its own)."""
        return tuple(hosts.most_specific_first(h for h in self.destination_rules if hosts.is_wildcard(h)))


__all__ = [
    "BoundServer",
    "FleetConfig",
    "ResolvedConfig",
    "ResolvedDestinationRule",
    "ResolvedGateway",
    "ResolvedVirtualService",
    "Service",
    "ServiceEntrySpec",
]
