"""Value-level limits every field shares: what the Istio protos can hold and what protobuf can serialize.

The schema accepts any YAML integer, float and string; istiod's decoder would refuse an int32 field of
2^40, NaN percentages slip past Go's range checks (every comparison with NaN is false), and a string with a
lone surrogate (`"\\ud800"` in YAML) cannot even be serialized. Catch them all here, once, by walking the
typed spec, so no later stage can crash or emit what Envoy would reject.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from reconciler.manifests.durations import Duration
from reconciler.manifests.schema import INT32_MAX, INT32_MIN, MAX_DURATION_NANOS, field_keys
from reconciler.validation.common import Path, ResourceReport


def check_values(report: ResourceReport) -> None:
    resource = report.resource
    if resource.plain_spec is not None and resource.plain_spec is resource.spec:
        return  # the loader saw every value of this spec, and none is one these checks could object to
    _check(report, resource.spec, ("spec",))


def _check(report: ResourceReport, value: Any, path: Path) -> None:
    """`value`, then everything under it (dataclass fields, list items, dict keys and values) in document order.

    A plain recursion rather than a generator of (path, value): nested `yield from` passes every value up
    through each level. It runs only for the rare spec the loader did not find plain (see `check_values`).
    Children that are falsy (None, False, 0, "", empty) are skipped: each of them is a valid value.
    """
    if isinstance(value, str):
        if not _is_encodable(value):
            report.error(path, "invalid-text", "the text contains characters that are not valid Unicode")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check(report, item, (*path, i))
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT32_MIN <= value <= INT32_MAX:
            report.error(path, "value-out-of-range", f"{value} does not fit a 32-bit integer field")
    elif isinstance(value, float):
        if not math.isfinite(value):
            report.error(path, "not-a-number", f"{value} is not a usable number here; write a finite number")
    elif isinstance(value, Duration):
        if value.nanos > MAX_DURATION_NANOS:
            report.error(path, "invalid-duration", "the duration is out of range (at most about 292 years)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(report, key, (*path, key))
            _check(report, item, (*path, key))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for name, key in field_keys(type(value)):
            child = getattr(value, name)
            if child:
                _check(report, child, (*path, key))


def _is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
