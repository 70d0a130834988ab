"""ServiceEntry and DestinationRule rules: the registry that clusters and endpoints are built from."""

from __future__ import annotations

from reconciler.config.hosts import is_ip_address
from reconciler.manifests.model import UNIX_PREFIX, DestinationRuleSpec, ServiceEntrySpec
from reconciler.validation.common import ResourceReport
from reconciler.validation.fields import check_labels, check_port
from reconciler.validation.names import (
    fqdn_error,
    is_dns_label,
    partial_wildcard_error,
    subnet_error,
    wildcard_domain_error,
)

# Resolutions whose endpoints Envoy gets as addresses (EDS / STATIC clusters), which must be IPs.
IP_RESOLUTIONS = frozenset({"STATIC", "NONE"})


def check_service_entry(report: ResourceReport) -> None:
    spec: ServiceEntrySpec = report.resource.spec
    if not spec.hosts:
        report.error(("spec", "hosts"), "service-entry-no-hosts", "a ServiceEntry needs at least one host")
    for i, host in enumerate(spec.hosts):
        problem = "a ServiceEntry host cannot be '*'" if host == "*" else wildcard_domain_error(host)
        if problem:
            report.error(("spec", "hosts", i), "invalid-host", problem)
        elif spec.resolution.startswith("DNS") and host.startswith("*") and not spec.endpoints:
            report.error(("spec", "hosts", i), "invalid-host", "a wildcard host cannot be resolved with DNS")
        else:
            partial = partial_wildcard_error(host)
            if partial:
                report.warning(("spec", "hosts", i), "partial-wildcard", partial)
    for i, address in enumerate(spec.addresses):
        problem = subnet_error(address)
        if problem:
            report.error(("spec", "addresses", i), "invalid-address", problem)
    _check_ports(report, spec)
    _check_endpoints(report, spec)


def _check_ports(report: ResourceReport, spec: ServiceEntrySpec) -> None:
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(spec.ports):
        path = ("spec", "ports", i)
        check_port(report, (*path, "number"), port.number)
        if port.target_port is not None:
            check_port(report, (*path, "targetPort"), port.target_port)
        if not is_dns_label(port.name):
            report.error((*path, "name"), "invalid-port-name", f"{port.name!r} is not a valid port name")
        if port.name in names:
            report.error((*path, "name"), "duplicate-port-name", f"port name {port.name!r} is used twice")
        if port.number in numbers:
            report.error((*path, "number"), "duplicate-port", f"port {port.number} is declared twice")
        names.add(port.name)
        numbers.add(port.number)


def _check_endpoints(report: ResourceReport, spec: ServiceEntrySpec) -> None:
    port_names = {p.name for p in spec.ports}
    for i, endpoint in enumerate(spec.endpoints):
        path = ("spec", "endpoints", i)
        address = endpoint.address
        if not address:
            report.error((*path, "address"), "invalid-endpoint", "the endpoint needs an address")
        elif address.startswith(UNIX_PREFIX):
            if endpoint.ports:
                report.error((*path, "ports"), "invalid-endpoint", "a unix socket endpoint takes no ports")
        elif spec.resolution in IP_RESOLUTIONS and not is_ip_address(address):
            report.error(
                (*path, "address"),
                "invalid-endpoint",
                f"{address!r} is not an IP address; with resolution {spec.resolution} endpoints must be IPs "
                "(use resolution: DNS for host names)",
            )
        elif not is_ip_address(address) and fqdn_error(address):
            report.error((*path, "address"), "invalid-endpoint", f"{address!r} is neither an IP nor a host name")
        for name, number in endpoint.ports.items():
            if name not in port_names:
                report.error(
                    (*path, "ports", name), "unknown-port-name", f"the ServiceEntry declares no port named {name!r}"
                )
            check_port(report, (*path, "ports", name), number)
        check_labels(report, (*path, "labels"), endpoint.labels)


def check_destination_rule(report: ResourceReport) -> None:
    spec: DestinationRuleSpec = report.resource.spec
    problem = wildcard_domain_error(spec.host)
    if problem:
        report.error(("spec", "host"), "invalid-host", problem)
    seen: set[str] = set()
    for i, subset in enumerate(spec.subsets):
        path = ("spec", "subsets", i)
        if not is_dns_label(subset.name):
            report.error((*path, "name"), "invalid-subset-name", f"{subset.name!r} is not a valid subset name")
        if subset.name in seen:
            report.error((*path, "name"), "duplicate-subset", f"subset {subset.name!r} is defined twice")
        seen.add(subset.name)
        check_labels(report, (*path, "labels"), subset.labels)
