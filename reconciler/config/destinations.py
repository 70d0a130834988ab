"""Qualify the destination hosts of a VirtualService (`reviews` → `reviews.<ns>.svc.cluster.local`).

A spec is a deep tree of frozen dataclasses, and most destination hosts are FQDNs already. The walk is made
once per model class from its field types and visits only the fields through which a Destination can be
reached; it rebuilds only the objects on the way to a host that changes and shares all the rest with the
document, so a VirtualService whose hosts are all qualified comes back as the very same object.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from reconciler.config import hosts
from reconciler.manifests.model import Destination
from reconciler.manifests.schema import field_keys

T = TypeVar("T")
# Returns the value with every Destination.host in it passed through the given function (the same object if
# none changes).
Qualifier = Callable[[Any, Callable[[str], str]], Any]


def qualify_destinations(value: T, namespace: str, domain_suffix: str) -> T:
    """`value` (a spec, a rule, ...) with its destination hosts expanded as short names of `namespace`."""
    model_type: Any = type(value)
    qualifier = _qualifier(model_type)
    if qualifier is None:
        return value

    def qualify(host: str) -> str:
        return hosts.expand_short_name(host, namespace, domain_suffix)

    result: T = qualifier(value, qualify)
    return result


@functools.cache
def _qualifier(tp: Any) -> Qualifier | None:
    """The qualifier for values of a model type; None when no Destination can be inside one."""
    if tp is Destination:
        return _destination
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        return _qualifier(members[0]) if len(members) == 1 else None
    if origin is list:
        item = _qualifier(typing.get_args(tp)[0])
        return None if item is None else _list(item)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _object(tp)
    return None  # scalars, and dicts (no dict of the model holds a Destination)


def _destination(destination: Destination, qualify: Callable[[str], str]) -> Destination:
    host = qualify(destination.host)
    return destination if host == destination.host else dataclasses.replace(destination, host=host)


def _list(item: Qualifier) -> Qualifier:
    def qualified(values: list[Any], qualify: Callable[[str], str]) -> list[Any]:
        items = [item(v, qualify) for v in values]
        return values if all(map(operator.is_, items, values)) else items

    return qualified


def _object(cls: type) -> Qualifier | None:
    hints = typing.get_type_hints(cls)
    # The model is a tree of distinct classes; a class that contained itself would recurse here forever.
    fields = [(name, q) for name, _ in field_keys(cls) if (q := _qualifier(hints[name])) is not None]
    if not fields:
        return None

    def qualified(value: Any, qualify: Callable[[str], str]) -> Any:
        changes = {}
        for name, field_qualifier in fields:
            current = getattr(value, name)
            if current is not None:
                new = field_qualifier(current, qualify)
                if new is not current:
                    changes[name] = new
        return dataclasses.replace(value, **changes) if changes else value

    return qualified
