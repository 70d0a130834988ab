"""Istio's VirtualService rules (ValidateVirtualService, validateTLSRoute, validateTCPRoute)."""

from __future__ import annotations

from reconciler.config import hosts
from reconciler.config.hosts import is_ip_address
from reconciler.config.resolve import MESH
from reconciler.manifests.model import L4MatchAttributes, TCPRoute, TLSMatchAttributes, TLSRoute, VirtualServiceSpec
from reconciler.validation.common import Path, ResourceReport
from reconciler.validation.fields import check_destination, check_gateway_names, check_labels, check_port, check_weights
from reconciler.validation.headers import is_jwt_claim
from reconciler.validation.http_route import check_http_route
from reconciler.validation.match_analysis import check_http_reachability, check_l4_reachability
from reconciler.validation.names import is_dns_label, subnet_error, vs_gateway_host_error, wildcard_domain_error


def check_virtual_service(report: ResourceReport) -> None:
    spec: VirtualServiceSpec = report.resource.spec
    is_delegate = not spec.hosts
    if is_delegate:
        for field_name, present in (("gateways", spec.gateways), ("tls", spec.tls), ("tcp", spec.tcp)):
            if present:
                report.error(
                    ("spec", field_name),
                    "invalid-delegate",
                    f"a delegate VirtualService (one without hosts) cannot have {field_name}",
                )
    check_gateway_names(report, ("spec", "gateways"), spec.gateways)
    applies_to_gateway = bool(spec.gateways) and MESH not in spec.gateways
    if not applies_to_gateway:
        _check_no_jwt_claims(report, spec)
    _check_hosts(report, spec, applies_to_gateway)
    if not (spec.http or spec.tcp or spec.tls):
        report.error(("spec",), "no-routes", "the VirtualService needs http, tcp or tls rules")
    for i, rule in enumerate(spec.http):
        check_http_route(report, rule, ("spec", "http", i), in_delegate=is_delegate)
    for i, tls in enumerate(spec.tls):
        _check_tls_route(report, tls, ("spec", "tls", i), spec, applies_to_gateway)
    for i, tcp in enumerate(spec.tcp):
        _check_tcp_route(report, tcp, ("spec", "tcp", i))
    check_export_to(report, spec.export_to)
    check_http_reachability(report, spec.http)
    check_l4_reachability(report, spec.tcp, "tcp")
    check_l4_reachability(report, spec.tls, "tls")


def _check_no_jwt_claims(report: ResourceReport, spec: VirtualServiceSpec) -> None:
    for i, rule in enumerate(spec.http):
        for j, match in enumerate(rule.match):
            for field_name, headers in (("headers", match.headers), ("withoutHeaders", match.without_headers)):
                for name in headers:
                    if is_jwt_claim(name):
                        report.error(
                            ("spec", "http", i, "match", j, field_name, name),
                            "jwt-claim-without-gateway",
                            "routing on a JWT claim works only on gateways; add the VirtualService's gateways",
                        )


def _check_hosts(report: ResourceReport, spec: VirtualServiceSpec, applies_to_gateway: bool) -> None:
    has_sni = any(match.sni_hosts for tls in spec.tls for match in tls.match)
    all_valid = True
    for i, host in enumerate(spec.hosts):
        problem = vs_gateway_host_error(host, has_sni) if applies_to_gateway else wildcard_domain_error(host)
        if problem and not is_ip_address(host):
            report.error(("spec", "hosts", i), "invalid-host", problem)
            all_valid = False
        elif not problem and not applies_to_gateway and host == "*":
            report.error(
                ("spec", "hosts", i), "invalid-host", "host '*' is not allowed on a VirtualService for the mesh"
            )
            all_valid = False
    if not all_valid:
        return
    for i, first in enumerate(spec.hosts):
        for j in range(i + 1, len(spec.hosts)):
            if hosts.matches(first, spec.hosts[j]):
                report.error(
                    ("spec", "hosts", j),
                    "duplicate-host",
                    f"hosts {first!r} and {spec.hosts[j]!r} overlap; list each host once",
                    [report.resource.locate("spec", "hosts", i)],
                )


def _check_tls_route(
    report: ResourceReport, route: TLSRoute, path: Path, spec: VirtualServiceSpec, applies_to_gateway: bool
) -> None:
    if not route.match:
        report.error((*path, "match"), "tls-route-without-match", "a TLS rule needs at least one match (sniHosts)")
    for j, match in enumerate(route.match):
        where = (*path, "match", j)
        if not match.sni_hosts:
            report.error((*where, "sniHosts"), "tls-match-without-sni", "a TLS match needs at least one SNI host")
        for k, sni in enumerate(match.sni_hosts):
            _check_sni_host(report, (*where, "sniHosts", k), sni, spec.hosts, applies_to_gateway)
        _check_l4_match(report, where, match)
    _check_l4_destinations(report, route, path, "TLS")


def _check_sni_host(
    report: ResourceReport, path: Path, sni: str, vs_hosts: list[str], applies_to_gateway: bool
) -> None:
    problem = vs_gateway_host_error(sni, True) if applies_to_gateway else wildcard_domain_error(sni)
    if problem:
        if is_ip_address(sni):
            report.warning(path, "sni-is-ip", f"SNI {sni!r} is an IP address; most TLS clients never send that")
        else:
            report.error(path, "invalid-host", problem)
        return
    if not any(hosts.subset_of(sni, h) for h in vs_hosts):
        report.error(
            path,
            "sni-not-in-hosts",
            f"SNI host {sni!r} is not covered by any host of the VirtualService ({', '.join(vs_hosts)})",
        )


def _check_tcp_route(report: ResourceReport, route: TCPRoute, path: Path) -> None:
    for j, match in enumerate(route.match):
        _check_l4_match(report, (*path, "match", j), match)
    _check_l4_destinations(report, route, path, "TCP")


def _check_l4_match(report: ResourceReport, where: Path, match: TLSMatchAttributes | L4MatchAttributes) -> None:
    """The fields TLS and TCP matches share (Istio's API declares them in both match types)."""
    for k, subnet in enumerate(match.destination_subnets):
        problem = subnet_error(subnet)
        if problem:
            report.error((*where, "destinationSubnets", k), "invalid-subnet", problem)
    if match.port:
        check_port(report, (*where, "port"), match.port)
    check_labels(report, (*where, "sourceLabels"), match.source_labels)
    check_gateway_names(report, (*where, "gateways"), match.gateways)


def _check_l4_destinations(report: ResourceReport, route: TLSRoute | TCPRoute, path: Path, kind: str) -> None:
    if not route.route:
        report.error((*path, "route"), "missing-action", f"a {kind} rule needs a route")
    for i, destination in enumerate(route.route):
        check_destination(report, (*path, "route", i, "destination"), destination.destination)
    check_weights(report, (*path, "route"), [d.weight for d in route.route])


def check_export_to(report: ResourceReport, export_to: list[str]) -> None:
    """`.`, `*` or namespace names, each once; `*` alone (validateExportTo, not a ServiceEntry)."""
    namespace = report.resource.namespace
    seen: set[str] = set()
    for i, entry in enumerate(export_to):
        key = namespace if entry == "." else entry
        if key in seen:
            report.error(("spec", "exportTo", i), "invalid-export-to", f"exportTo lists {entry!r} twice")
        elif entry not in (".", "*") and not is_dns_label(entry):
            report.error(("spec", "exportTo", i), "invalid-export-to", f"{entry!r} is not '.', '*' or a namespace")
        seen.add(key)
    if "*" in export_to and len(export_to) > 1:
        report.error(("spec", "exportTo"), "invalid-export-to", "exportTo '*' (public) cannot be combined with others")
