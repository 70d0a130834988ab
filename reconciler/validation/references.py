"""Cross-resource references: what istiod accepts silently and then serves as 404 or 503."""

from __future__ import annotations

from collections.abc import Iterator

from reconciler.config.model import ResolvedVirtualService
from reconciler.config.resolve import MESH, gateway_applies
from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.model import Destination, GatewaySpec
from reconciler.validation.common import Path, finding_at
from reconciler.validation.index import InputName, RepoIndex, gateway_input, host_input


def check_references(vs: ResolvedVirtualService, index: RepoIndex) -> list[Finding]:
    """The Gateways and destinations one VirtualService names, each checked against the index."""
    findings: list[Finding] = []
    for position, gateway in enumerate(vs.gateways):
        if gateway != MESH and gateway not in index.gateways:
            findings.append(
                _finding(
                    vs,
                    ("spec", "gateways", position),
                    Severity.ERROR,
                    "gateway-not-found",
                    f"gateway {gateway!r} does not exist; define it or fix the name",
                )
            )
    for path, destination in _destinations(vs):
        findings.extend(_check_destination(index, vs, destination, path))
    return findings


def references_read(vs: ResolvedVirtualService) -> Iterator[InputName]:
    """What `check_references` looks up besides the VirtualService itself."""
    yield from (gateway_input(g) for g in vs.gateways)
    yield from (host_input(h) for h in dict.fromkeys(destination.host for _, destination in _destinations(vs)))


def check_gateway_fleets(index: RepoIndex) -> list[Finding]:
    findings: list[Finding] = []
    fleet_specs = [f.spec for f in index.fleets]
    for ref, gateway_resource in sorted(index.gateways.items()):
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


def _destinations(vs: ResolvedVirtualService) -> Iterator[tuple[Path, Destination]]:
    """Every destination of the VS with its path in the document, for precise findings."""
    for i, rule in enumerate(vs.spec.http):
        for j, route in enumerate(rule.route):
            yield ("spec", "http", i, "route", j, "destination", "host"), route.destination
        if rule.mirror is not None:
            yield ("spec", "http", i, "mirror", "host"), rule.mirror
        for j, mirror in enumerate(rule.mirrors):
            yield ("spec", "http", i, "mirrors", j, "destination", "host"), mirror.destination
    for i, tcp in enumerate(vs.spec.tcp):
        for j, tcp_route in enumerate(tcp.route):
            yield ("spec", "tcp", i, "route", j, "destination", "host"), tcp_route.destination
    for i, tls in enumerate(vs.spec.tls):
        for j, tls_route in enumerate(tls.route):
            yield ("spec", "tls", i, "route", j, "destination", "host"), tls_route.destination


def _check_destination(
    index: RepoIndex, vs: ResolvedVirtualService, destination: Destination, path: Path
) -> list[Finding]:
    service = index.services.get(destination.host)
    if service is None:
        return [
            _finding(
                vs,
                path,
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
                path,
                Severity.ERROR,
                "destination-port-not-found",
                f"{destination.host} has no port {destination.port.number} (ports: {ports})",
            )
        )
    if (destination.port is None or not destination.port.number) and len(service.ports) > 1:
        found.append(
            _finding(
                vs,
                path,
                Severity.ERROR,
                "destination-port-required",
                f"{destination.host} has several ports; the destination must name one",
            )
        )
    if destination.subset:
        rule = index.destination_rules.get(destination.host)
        if rule is None or destination.subset not in {s.name for s in rule.spec.subsets}:
            found.append(
                _finding(
                    vs,
                    path,
                    Severity.ERROR,
                    "subset-not-found",
                    f"subset {destination.subset!r} of {destination.host} is defined by no DestinationRule",
                )
            )
    return found


def _finding(vs: ResolvedVirtualService, path: Path, severity: Severity, code: str, message: str) -> Finding:
    return finding_at(vs.resource, path, severity, code, message)
