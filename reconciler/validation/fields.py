"""Field checks shared by the VirtualService rules: durations, ports, percentages, labels, destinations."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from reconciler.manifests.durations import Duration
from reconciler.manifests.model import Destination, Percent
from reconciler.validation.common import Path, ResourceReport
from reconciler.validation.names import (
    fqdn_error,
    is_dns_label,
    label_key_error,
    label_value_error,
    wildcard_domain_error,
)

UINT32_MAX = 2**32 - 1
NANOS_PER_MS = 1_000_000


def check_duration(report: ResourceReport, path: Path, value: Duration | None) -> None:
    """istio's ValidateDuration: at least 1ms, whole milliseconds."""
    if value is None:
        return
    if value.nanos < NANOS_PER_MS:
        report.error(path, "invalid-duration", f"{value} is too short; durations must be at least 1ms")
    elif value.nanos % NANOS_PER_MS:
        report.error(path, "invalid-duration", f"{value} is finer than a millisecond; round it to whole ms")


def check_port(report: ResourceReport, path: Path, number: int) -> None:
    if not 1 <= number <= 65535:
        report.error(path, "invalid-port", f"port {number} is not in 1..65535")


def check_percentage(report: ResourceReport, path: Path, percent: Percent | None) -> None:
    """0, or between 0.0001 and 100 (Envoy keeps four decimals); NaN is refused too."""
    if percent is None:
        return
    value = percent.value
    if not math.isfinite(value):
        return  # reported once, by the value checks
    if not (value == 0 or 0.0001 <= value <= 100):
        report.error(path, "invalid-percentage", f"{value} is neither 0 nor in 0.0001..100")


def check_labels(report: ResourceReport, path: Path, labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        problem = label_key_error(key) or label_value_error(value)
        if problem:
            report.error((*path, key), "invalid-label", problem)


def check_gateway_names(report: ResourceReport, path: Path, names: Sequence[str]) -> None:
    """`namespace/name`, a bare name, or the legacy `name.namespace.svc.<domain>` form (validateGatewayNames)."""
    for i, name in enumerate(names):
        where = (*path, i)
        namespace, slash, gateway = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                report.warning(
                    where,
                    "legacy-gateway-name",
                    f"{name!r} is the legacy gateway name format; prefer {parts[1]}/{parts[0]}",
                )
            problem = fqdn_error(name)
            if problem:
                report.error(where, "invalid-gateway-name", problem)
            continue
        if not namespace or not gateway:
            report.error(where, "invalid-gateway-name", f"{name!r} needs both a namespace and a name around '/'")
        elif not is_dns_label(namespace):
            report.error(where, "invalid-gateway-name", f"{namespace!r} is not a valid namespace in {name!r}")
        elif not is_dns_label(gateway):
            report.error(where, "invalid-gateway-name", f"{gateway!r} is not a valid gateway name in {name!r}")


def check_destination(report: ResourceReport, path: Path, destination: Destination) -> None:
    if destination.host == "*":
        report.error((*path, "host"), "invalid-destination-host", "a destination host cannot be '*'")
    else:
        problem = wildcard_domain_error(destination.host)
        if problem:
            report.error((*path, "host"), "invalid-destination-host", problem)
    if destination.subset and not is_dns_label(destination.subset):
        report.error((*path, "subset"), "invalid-subset-name", f"{destination.subset!r} is not a valid subset name")
    if destination.port is not None:
        check_port(report, (*path, "port", "number"), destination.port.number)


def check_weights(report: ResourceReport, path: Path, weights: Sequence[int]) -> None:
    """Weights are relative (Envoy normalises them) but not negative, not all 0, and their sum fits uint32."""
    for i, weight in enumerate(weights):
        if weight < 0:
            report.error((*path, i, "weight"), "negative-weight", f"weight {weight} is negative")
    total = sum(w for w in weights if w > 0)
    if len(weights) > 1 and total == 0:
        report.error(path, "zero-total-weight", "the destinations' weights add up to 0; give at least one a weight")
    if total > UINT32_MAX:
        report.error(path, "weight-too-large", f"the weights add up to {total}, more than Envoy allows ({UINT32_MAX})")
