"""Value-level limits every field shares: what the Istio protos can hold and what protobuf can serialize.

The schema accepts any YAML integer, float and string; istiod's decoder would refuse an int32 field of
2^40, NaN percentages slip past Go's range checks (every comparison with NaN is false), and a string with a
lone surrogate (`"\\ud800"` in YAML) cannot even be serialized. Catch them all here, once, by walking the
typed spec, so no later stage can crash or emit what Envoy would reject.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from itertools import compress
from operator import attrgetter
from typing import Any

from reconciler.manifests.durations import Duration
from reconciler.manifests.schema import INT32_MAX, INT32_MIN, MAX_DURATION_NANOS, field_keys
from reconciler.validation.common import Path, ResourceReport


def check_values(report: ResourceReport) -> None:
    resource = report.resource
    if resource.plain_spec is not None and resource.plain_spec is resource.spec:
        return  # the loader saw every value of this spec, and none is one these checks could object to
    _visit(report, resource.spec, (), "spec")


def _visit(report: ResourceReport, value: Any, parent: Path, key: str | int) -> None:
    """Check `value` with the visitor of its type, chosen on the type's first visit."""
    kind = type(value)
    visit = _VISITORS.get(kind)
    if visit is None:
        visit = _VISITORS[kind] = _choose_visitor(kind)
    visit(report, value, parent, key)


# Checks the value found at `parent` + `key`, then everything under it (dataclass fields, list items, dict keys
# and values) in document order. The path is passed in two parts so that it is only built for a container or a
# finding, not for each of a document's scalars.
Visitor = Callable[[ResourceReport, Any, Path, str | int], None]


def _choose_visitor(kind: type) -> Visitor:
    """How to check a value of type `kind`.

    A big repo has hundreds of thousands of values: a look-up by type beats asking `isinstance` up to seven
    times per value, and a dataclass's fields are read by one `attrgetter`. The order of the tests keeps
    what a value of a subclass (a bool is an int) counts as. Containers look their items' visitors up in
    `_VISITORS` themselves (a call less per value) and skip ASCII text, most of a manifest: `str.isascii`
    reads a flag CPython keeps on every string, while other text must be encoded to find a lone surrogate.
    """
    for base, visit in _VISITORS_BY_BASE:
        if issubclass(kind, base):
            return visit
    if dataclasses.is_dataclass(kind):
        return _dataclass_visitor(kind)
    return _nothing


def _text(report: ResourceReport, value: str, parent: Path, key: str | int) -> None:
    if not _is_encodable(value):
        report.error((*parent, key), "invalid-text", "the text contains characters that are not valid Unicode")


def _integer(report: ResourceReport, value: int, parent: Path, key: str | int) -> None:
    if not INT32_MIN <= value <= INT32_MAX:
        report.error((*parent, key), "value-out-of-range", f"{value} does not fit a 32-bit integer field")


def _number(report: ResourceReport, value: float, parent: Path, key: str | int) -> None:
    if not math.isfinite(value):
        report.error((*parent, key), "not-a-number", f"{value} is not a usable number here; write a finite number")


def _duration(report: ResourceReport, value: Duration, parent: Path, key: str | int) -> None:
    if value.nanos > MAX_DURATION_NANOS:
        report.error((*parent, key), "invalid-duration", "the duration is out of range (at most about 292 years)")


def _nothing(report: ResourceReport, value: Any, parent: Path, key: str | int) -> None:
    pass


def _list(report: ResourceReport, value: list[Any], parent: Path, key: str | int) -> None:
    path = (*parent, key)
    for i, item in enumerate(value):
        kind = type(item)
        if not (kind is str and item.isascii()):
            (_VISITORS.get(kind) or _visit)(report, item, path, i)


def _dict(report: ResourceReport, value: dict[Any, Any], parent: Path, key: str | int) -> None:
    path = (*parent, key)
    for name, item in value.items():
        kind = type(name)
        if not (kind is str and name.isascii()):
            (_VISITORS.get(kind) or _visit)(report, name, path, name)
        kind = type(item)
        if not (kind is str and item.isascii()):
            (_VISITORS.get(kind) or _visit)(report, item, path, name)


def _dataclass_visitor(kind: type) -> Visitor:
    """Each field in order. Fields that are falsy (None, False, 0, "", empty) are valid values and skipped
    before the loop (`compress` tests them in C): most fields of a model object are left at their default."""
    keyed = field_keys(kind)
    keys = tuple(key for _, key in keyed)
    names = tuple(name for name, _ in keyed)
    # attrgetter of several names returns a tuple, of one name the bare value.
    read: Callable[[Any], tuple[Any, ...]] = (
        attrgetter(*names) if len(names) > 1 else lambda value: tuple(getattr(value, name) for name in names)
    )

    def visit(report: ResourceReport, value: Any, parent: Path, key: str | int) -> None:
        path = (*parent, key)
        children = read(value)
        for field_key, child in compress(zip(keys, children, strict=True), children):
            kind = type(child)
            if not (kind is str and child.isascii()):
                (_VISITORS.get(kind) or _visit)(report, child, path, field_key)

    return visit


# Each type's visitor, chosen on first sight (a value of any type may be given: the model has `Any` fields).
_VISITORS: dict[type, Visitor] = {}
# Checked in this order, as `isinstance` would be: bool before int.
_VISITORS_BY_BASE: tuple[tuple[type, Visitor], ...] = (
    (str, _text),
    (list, _list),
    (bool, _nothing),
    (int, _integer),
    (float, _number),
    (Duration, _duration),
    (dict, _dict),
)


def _is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
