"""Cross-resource references: what istiod accepts silently and then serves as 404 or 503."""

from __future__ import annotations

from collections.abc import Iterator

from reconciler.config.model import ResolvedConfig, ResolvedVirtualService
from reconciler.config.resolve import MESH, gateway_applies
from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.loader import ManifestSet
from reconciler.manifests.model import Destination, GatewaySpec


def check_references(manifests: ManifestSet, config: ResolvedConfig) -> list[Finding]:
    findings: list[Finding] = []
    gateways = {f"{g.namespace}/{g.name}": g for g in manifests.of_kind("Gateway")}
    for vs in config.virtual_services:
        for gateway in vs.gateways:
            if gateway != MESH and gateway not in gateways:
                findings.append(
                    _finding(
                        vs,
                        Severity.ERROR,
                        "gateway-not-found",
                        f"gateway {gateway!r} does not exist; define it or fix the name",
                    )
                )
        for destination in _destinations(vs):
            findings.extend(_check_destination(config, vs, destination))
    fleet_specs = [f.spec for f in manifests.of_kind("Fleet")]
    for ref, gateway_resource in sorted(gateways.items()):
        spec: GatewaySpec = gateway_resource.spec
        if fleet_specs and not any(gateway_applies(spec, fleet) for fleet in fleet_specs):
            findings.append(
                Finding(
                    Severity.WARNING,
                    "gateway-selects-no-fleet",
                    f"gateway {ref} selector {spec.selector} matches no Fleet; no Envoy serves it",
                    gateway_resource.location,
                    gateway_resource.ref,
                )
            )
    return findings


def _destinations(vs: ResolvedVirtualService) -> Iterator[Destination]:
    for rule in vs.spec.http:
        yield from (d.destination for d in rule.route)
        if rule.mirror is not None:
            yield rule.mirror
        yield from (m.destination for m in rule.mirrors)
    for tcp in vs.spec.tcp:
        yield from (d.destination for d in tcp.route)
    for tls in vs.spec.tls:
        yield from (d.destination for d in tls.route)


def _check_destination(config: ResolvedConfig, vs: ResolvedVirtualService, destination: Destination) -> list[Finding]:
    service = config.services.get(destination.host)
    if service is None:
        return [
            _finding(
                vs,
                Severity.ERROR,
                "destination-host-not-found",
                f"destination host {destination.host!r} is declared by no ServiceEntry; Envoy would answer 503 for it",
            )
        ]
    found: list[Finding] = []
    if destination.port is not None and destination.port.number and service.port(destination.port.number) is None:
        ports = ", ".join(str(p.number) for p in service.ports)
        found.append(
            _finding(
                vs,
                Severity.ERROR,
                "destination-port-not-found",
                f"{destination.host} has no port {destination.port.number} (ports: {ports})",
            )
        )
    if (destination.port is None or not destination.port.number) and len(service.ports) > 1:
        found.append(
            _finding(
                vs,
                Severity.ERROR,
                "destination-port-required",
                f"{destination.host} has several ports; the destination must name one",
            )
        )
    if destination.subset:
        rule = config.destination_rules.get(destination.host)
        if rule is None or destination.subset not in {s.name for s in rule.spec.subsets}:
            found.append(
                _finding(
                    vs,
                    Severity.ERROR,
                    "subset-not-found",
                    f"subset {destination.subset!r} of {destination.host} is defined by no DestinationRule",
                )
            )
    return found


def _finding(vs: ResolvedVirtualService, severity: Severity, code: str, message: str) -> Finding:
    return Finding(severity, code, message, vs.resource.location, vs.resource.ref)
