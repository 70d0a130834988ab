"""Resolve a ManifestSet into the model `translate` reads (pure: same manifests in, same model out)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from reconciler.config import hosts
from reconciler.config.delegates import merge_delegates
from reconciler.config.model import (
    BoundServer,
    FleetConfig,
    ResolvedConfig,
    ResolvedDestinationRule,
    ResolvedGateway,
    ResolvedVirtualService,
    Service,
)
from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.loader import ManifestSet
from reconciler.manifests.model import (
    Destination,
    DestinationRuleSpec,
    FleetSpec,
    GatewaySpec,
    Resource,
    ServiceEntrySpec,
    VirtualServiceSpec,
)
from reconciler.manifests.schema import field_keys

MESH = "mesh"

VirtualServiceResolver = Callable[[Resource, str], ResolvedVirtualService]


def resolve(
    manifests: ManifestSet,
    domain_suffix: str = hosts.DEFAULT_DOMAIN_SUFFIX,
    resolve_virtual_service: VirtualServiceResolver | None = None,
) -> ResolvedConfig:
    """`resolve_virtual_service` replaces the per-document step, e.g. by a cache keyed on the document."""
    one_vs = resolve_virtual_service or resolve_one_virtual_service
    findings: list[Finding] = []
    gateways = {
        f"{r.namespace}/{r.name}": ResolvedGateway(f"{r.namespace}/{r.name}", r) for r in manifests.of_kind("Gateway")
    }
    virtual_services = sorted(
        (one_vs(r, domain_suffix) for r in manifests.of_kind("VirtualService")),
        # Istio orders by creation time, then name, then namespace. Git has no creation time, so we keep
        # Istio's tie-breakers: a VS's place never depends on file names or on the order of documents.
        key=lambda vs: (vs.resource.name, vs.resource.namespace),
    )
    # Roots get their delegates' rules; only routable VSs bind to servers (virtual_services keeps them all).
    routable, delegate_findings = merge_delegates(virtual_services)
    findings.extend(delegate_findings)
    services = _services(manifests.of_kind("ServiceEntry"), findings)
    destination_rules = _destination_rules(manifests.of_kind("DestinationRule"), domain_suffix)
    fleets = {}
    for fleet in sorted(manifests.of_kind("Fleet"), key=lambda r: r.name):
        fleets[fleet.name] = _fleet(fleet, gateways, routable)
    return ResolvedConfig(fleets, services, destination_rules, tuple(virtual_services), tuple(findings))


def resolve_gateway_name(raw: str, vs_namespace: str) -> str:
    """`gw` and `./gw` → `<vs-ns>/gw`; legacy `gw.ns.svc.cluster.local` → `ns/gw`; `ns/gw` as is."""
    if raw == MESH:
        return MESH
    if raw.startswith("./"):
        return f"{vs_namespace}/{raw[2:]}"
    if "/" in raw:
        return raw
    if "." in raw:
        name, namespace = raw.split(".")[:2]
        return f"{namespace}/{name}"
    return f"{vs_namespace}/{raw}"


def resolve_one_virtual_service(resource: Resource, domain_suffix: str) -> ResolvedVirtualService:
    """One VirtualService on its own: it reads nothing but its document, so it can be cached per document."""
    spec: VirtualServiceSpec = resource.spec
    ns = resource.namespace
    resolved_hosts = tuple(hosts.normalize_host(hosts.expand_short_name(h, ns, domain_suffix)) for h in spec.hosts)
    gateways = tuple(resolve_gateway_name(g, ns) for g in spec.gateways) or (MESH,)
    expanded = _expand_destinations(spec, ns, domain_suffix)
    return ResolvedVirtualService(resource, resolved_hosts, gateways, expanded)


def _expand_destinations(value: Any, namespace: str, domain_suffix: str) -> Any:
    """Return `value` with every Destination.host qualified, rebuilding only what changes."""
    if isinstance(value, Destination):
        return dataclasses.replace(value, host=hosts.expand_short_name(value.host, namespace, domain_suffix))
    if isinstance(value, list):
        return [_expand_destinations(v, namespace, domain_suffix) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for name, _ in field_keys(type(value)):
            current = getattr(value, name)
            if isinstance(current, list) or dataclasses.is_dataclass(current):
                changes[name] = _expand_destinations(current, namespace, domain_suffix)
        return dataclasses.replace(value, **changes) if changes else value
    return value


def _services(entries: list[Resource], findings: list[Finding]) -> dict[str, Service]:
    services: dict[str, Service] = {}
    for entry in sorted(entries, key=lambda r: (r.namespace, r.name)):
        spec: ServiceEntrySpec = entry.spec
        for host in spec.hosts:
            if host in services:
                first = services[host].source
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "duplicate-service-host",
                        f"host {host!r} is also declared by {first.ref} ({first.location}); that one is used",
                        entry.location,
                        entry.ref,
                        (first.location,),
                    )
                )
                continue
            services[host] = Service(
                host, entry.namespace, tuple(spec.ports), spec.resolution, tuple(spec.endpoints), entry
            )
    return services


def _destination_rules(rules: list[Resource], domain_suffix: str) -> dict[str, ResolvedDestinationRule]:
    """Several rules for one host merge as Istio merges them: first subset name and first policy win."""
    by_host: dict[str, list[Resource]] = defaultdict(list)
    for rule in sorted(rules, key=lambda r: (r.name, r.namespace)):
        spec: DestinationRuleSpec = rule.spec
        by_host[hosts.expand_short_name(spec.host, rule.namespace, domain_suffix)].append(rule)
    merged = {}
    for host, sources in by_host.items():
        subsets, seen, policy = [], set(), None
        for source in sources:
            spec = source.spec
            policy = policy or spec.traffic_policy
            for subset in spec.subsets:
                if subset.name not in seen:
                    seen.add(subset.name)
                    subsets.append(subset)
        spec = DestinationRuleSpec(host=host, traffic_policy=policy, subsets=subsets)
        merged[host] = ResolvedDestinationRule(host, spec, tuple(sources))
    return merged


def gateway_applies(gateway: GatewaySpec, fleet: FleetSpec) -> bool:
    """A Gateway applies to a fleet when its selector is a subset of the fleet's labels (empty: every fleet)."""
    return all(fleet.selector.get(k) == v for k, v in gateway.selector.items())


def _fleet(
    fleet: Resource, gateways: dict[str, ResolvedGateway], virtual_services: list[ResolvedVirtualService]
) -> FleetConfig:
    selected = tuple(g for ref, g in sorted(gateways.items()) if gateway_applies(g.spec, fleet.spec))
    servers = []
    for gateway in selected:
        bound_vs = [vs for vs in virtual_services if gateway.ref in vs.gateways]
        for index, server in enumerate(gateway.spec.servers):
            servers.append(BoundServer(gateway, server, index, _virtual_hosts(gateway, server.hosts, bound_vs)))
    return FleetConfig(fleet.name, fleet, selected, tuple(servers))


def _virtual_hosts(
    gateway: ResolvedGateway, server_hosts: list[str], bound_vs: list[ResolvedVirtualService]
) -> tuple[tuple[str, tuple[ResolvedVirtualService, ...]], ...]:
    """Per host (the more specific of server host and VS host), the VSs that route it, in VS order."""
    qualified = [_qualify_server_host(hosts.normalize_host(h), gateway.resource.namespace) for h in server_hosts]
    by_host: dict[str, list[ResolvedVirtualService]] = {}
    for vs in bound_vs:
        visible = hosts.names_for_namespace(qualified, vs.namespace)
        for host in hosts.intersection(visible, list(vs.hosts)):
            by_host.setdefault(host, []).append(vs)
    return tuple((host, tuple(vss)) for host, vss in sorted(by_host.items()))


def _qualify_server_host(raw: str, gateway_namespace: str) -> str:
    namespace, host = hosts.split_namespaced_host(raw, gateway_namespace)
    return host if namespace == "*" else f"{namespace}/{host}"
