"""Per-document rules: Istio's webhook checks for each kind, plus names and value limits for every kind."""

from __future__ import annotations

from collections.abc import Callable

from reconciler.diagnostics import Finding
from reconciler.manifests.model import Resource
from reconciler.validation.common import ResourceReport
from reconciler.validation.gateway import check_gateway
from reconciler.validation.names import is_dns_label, object_name_error
from reconciler.validation.services import check_destination_rule, check_service_entry
from reconciler.validation.values import check_values
from reconciler.validation.virtualservice import check_virtual_service

KIND_RULES: dict[str, Callable[[ResourceReport], None]] = {
    "Gateway": check_gateway,
    "VirtualService": check_virtual_service,
    "ServiceEntry": check_service_entry,
    "DestinationRule": check_destination_rule,
}
# Istio requires a Gateway name to be one DNS label (no dots); other kinds take a Kubernetes name.
LABEL_NAMED_KINDS = frozenset({"Gateway"})


def check_resource(resource: Resource) -> tuple[Finding, ...]:
    """The rules that read one document and nothing else."""
    report = ResourceReport(resource)
    _check_metadata(report)
    check_values(report)
    rule = KIND_RULES.get(resource.kind)
    if rule is not None:
        rule(report)
    return tuple(report.findings)


def _check_metadata(report: ResourceReport) -> None:
    resource = report.resource
    problem = object_name_error(resource.name, label_only=resource.kind in LABEL_NAMED_KINDS)
    if problem:
        report.error(("metadata", "name"), "invalid-name", problem)
    if not (is_dns_label(resource.namespace) and resource.namespace == resource.namespace.lower()):
        report.error(
            ("metadata", "namespace"),
            "invalid-namespace",
            f"{resource.namespace!r} is not a namespace name (lower-case letters, digits and '-')",
        )
