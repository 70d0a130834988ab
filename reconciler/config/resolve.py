"""Resolve a ManifestSet into the model `translate` reads (pure: same manifests in, same model out)."""

from __future__ import annotations

from collections import defaultdict

from reconciler.config import hosts
from reconciler.config.delegates import merge_delegates
from reconciler.config.destinations import qualify_destinations
from reconciler.config.model import (
    BoundServer,
    FleetConfig,
    ResolvedConfig,
    ResolvedDestinationRule,
    ResolvedGateway,
    ResolvedVirtualService,
    Service,
)
from reconciler.config.resolve_memo import BindingIndex, LastBuild, ResolveMemo, istio_order
from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.loader import ManifestSet
from reconciler.manifests.model import (
    DestinationRuleSpec,
    FleetSpec,
    GatewaySpec,
    Resource,
    ServiceEntrySpec,
    VirtualServiceSpec,
)

MESH = "mesh"


def resolve(
    manifests: ManifestSet,
    domain_suffix: str = hosts.DEFAULT_DOMAIN_SUFFIX,
    memo: ResolveMemo | None = None,
) -> ResolvedConfig:
    """`memo`, kept between builds, makes the work follow what changed (the result is the same without it)."""
    resolve_one = resolve_one_virtual_service
    remember = memo is not None
    if memo is None:
        memo = ResolveMemo()
    elif memo.domain_suffix == domain_suffix:
        patched = memo.patch(manifests.resources, resolve_one, _meet)
        if patched is not None:
            return patched
    memo.start(domain_suffix)
    findings: list[Finding] = []
    gateways = {
        f"{r.namespace}/{r.name}": ResolvedGateway(f"{r.namespace}/{r.name}", r) for r in manifests.of_kind("Gateway")
    }
    resources = sorted(manifests.of_kind("VirtualService"), key=istio_order)
    virtual_services = memo.resolved_virtual_services(resources, resolve_one)
    # Roots get their delegates' rules; only routable VSs bind to servers (virtual_services keeps them all).
    routable, delegate_findings = merge_delegates(virtual_services)
    findings.extend(delegate_findings)
    entries = manifests.of_kind("ServiceEntry")
    services, service_findings = memo.services.get(entries, lambda: _services(entries))
    findings.extend(service_findings)
    rules = manifests.of_kind("DestinationRule")
    destination_rules = memo.destination_rules.get(rules, lambda: _destination_rules(rules, domain_suffix))
    by_gateway: dict[str, list[ResolvedVirtualService]] = defaultdict(list)
    for vs in routable:
        for ref in vs.gateways:
            by_gateway[ref].append(vs)
    # Of two fleets of one name, the later one counts (as for every kind of duplicate).
    built = {
        fleet.name: _fleet(fleet, gateways, by_gateway, memo)
        for fleet in sorted(manifests.of_kind("Fleet"), key=lambda r: r.name)
    }
    fleets = {name: fleet for name, (fleet, _) in built.items()}
    config = ResolvedConfig(fleets, services, destination_rules, tuple(virtual_services), tuple(findings))
    if remember:
        bindings = BindingIndex()
        for fleet, server_hosts in built.values():
            bindings.add_fleet(fleet, server_hosts)
        memo.last = LastBuild(domain_suffix, manifests.resources, config, routable, bindings)
    return config


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
    return ResolvedVirtualService(resource, resolved_hosts, gateways, qualify_destinations(spec, ns, domain_suffix))


def _services(entries: list[Resource]) -> tuple[dict[str, Service], tuple[Finding, ...]]:
    services: dict[str, Service] = {}
    findings: list[Finding] = []
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
    return services, tuple(findings)


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
    fleet: Resource,
    gateways: dict[str, ResolvedGateway],
    by_gateway: dict[str, list[ResolvedVirtualService]],
    memo: ResolveMemo,
) -> tuple[FleetConfig, list[tuple[str, ...]]]:
    """The fleet's gateways and servers, with each server's hosts qualified (what VirtualServices' hosts meet)."""
    selected = tuple(g for ref, g in sorted(gateways.items()) if gateway_applies(g.spec, fleet.spec))
    servers: list[BoundServer] = []
    server_hosts: list[tuple[str, ...]] = []
    for gateway in selected:
        for index, server in enumerate(gateway.spec.servers):
            namespace = gateway.resource.namespace
            qualified = tuple(_qualify_server_host(hosts.normalize_host(h), namespace) for h in server.hosts)
            virtual_hosts = _virtual_hosts(qualified, by_gateway.get(gateway.ref, []), memo)
            servers.append(BoundServer(gateway, server, index, virtual_hosts))
            server_hosts.append(qualified)
    return FleetConfig(fleet.name, fleet, selected, tuple(servers)), server_hosts


def _virtual_hosts(
    qualified: tuple[str, ...], bound_vs: list[ResolvedVirtualService], memo: ResolveMemo
) -> tuple[tuple[str, tuple[ResolvedVirtualService, ...]], ...]:
    """Per host (the more specific of a server host, `qualified`, and VS host), the VSs that route it, in VS
    order."""
    by_host: dict[str, list[ResolvedVirtualService]] = {}
    for vs in bound_vs:
        for host in memo.server_hosts((qualified, vs.namespace, vs.hosts), _meet):
            by_host.setdefault(host, []).append(vs)
    return tuple((host, tuple(vss)) for host, vss in sorted(by_host.items()))


def _meet(server_hosts: tuple[str, ...], namespace: str, vs_hosts: tuple[str, ...]) -> list[str]:
    """The hosts a VirtualService of `namespace` with `vs_hosts` routes on a server with `server_hosts`."""
    return hosts.intersection(hosts.names_for_namespace(server_hosts, namespace), vs_hosts)


def _qualify_server_host(raw: str, gateway_namespace: str) -> str:
    namespace, host = hosts.split_namespaced_host(raw, gateway_namespace)
    return host if namespace == "*" else f"{namespace}/{host}"
