"""Decode plain YAML data into the typed model, strictly, with a finding at the exact place of each problem.

The dataclasses in `model` are the schema: field types say what is accepted, fields without a default are
required, and YAML keys are the camelCase form of the field names (Istio's JSON form; the snake_case proto
form is accepted too, as istiod does). Unknown keys are errors, unlike istiod which drops them silently.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from reconciler.diagnostics import Finding, Location, Severity
from reconciler.manifests.durations import Duration, DurationError
from reconciler.manifests.yamldoc import Document, Path


class _Missing:
    """Returned for a value that could not be decoded; the finding has already been recorded."""


MISSING: Any = _Missing()


def camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def yaml_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("yaml", camel(f.name)))


@functools.cache
def field_keys(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute, YAML key) of each field of a model class, computed once: big trees walk thousands of objects."""
    return tuple((f.name, yaml_key(f)) for f in dataclasses.fields(cls))


@functools.cache
def _fields_by_key(
    cls: type, snake_case: bool
) -> tuple[dict[str, dataclasses.Field[Any]], tuple[dataclasses.Field[Any], ...]]:
    """A class's fields by every key that names them (camelCase or snake_case), and its required fields."""
    by_key: dict[str, dataclasses.Field[Any]] = {}
    for f in dataclasses.fields(cls):
        by_key[f.name if snake_case else yaml_key(f)] = f
        by_key.setdefault(f.name, f)  # snake_case, as in the proto
    required = tuple(
        f
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    return by_key, required


class Decoder:
    """Decodes one document; collects findings attributed to `file` and `resource`."""

    def __init__(
        self, doc: Document, file: str, resource: str = "", lenient: bool = False, snake_case: bool = False
    ) -> None:
        # Manifests use Istio's camelCase keys; our own daemon config file uses snake_case (DESIGN.md).
        self.snake_case = snake_case
        self.key_of = (lambda f: f.name) if snake_case else yaml_key
        self.doc = doc
        self.file = file
        self.resource = resource
        self.lenient = lenient
        self.findings: list[Finding] = []

    def location(self, path: Path) -> Location:
        line, column = self.doc.position(path)
        return Location(self.file, line, column)

    def report(self, path: Path, code: str, message: str, severity: Severity = Severity.ERROR) -> None:
        self.findings.append(Finding(severity, code, message, self.location(path), self.resource))

    def decode(self, tp: Any, value: Any, path: Path) -> Any:
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            if value is None:
                return None
            return self.decode(_pick_union_member(tp, value), value, path)
        if origin is Literal:
            return self._literal(get_args(tp), value, path)
        if origin is list:
            return self._list(get_args(tp)[0], value, path)
        if origin is dict:
            return self._dict(get_args(tp)[1], value, path)
        scalar = _SCALARS.get(tp)
        if scalar is not None:
            return scalar(self, value, path)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self._object(tp, value, path)
        if tp is Any:
            return value
        raise TypeError(f"schema type {tp!r} is not supported")  # a bug in the model, not user input

    def _literal(self, choices: tuple[Any, ...], value: Any, path: Path) -> Any:
        if value in choices:
            return value
        if isinstance(value, str):  # enums are case-insensitive in Istio's parser for protocols
            for choice in choices:
                if isinstance(choice, str) and choice.upper() == value.upper():
                    return choice
        allowed = ", ".join(str(c) for c in choices)
        self.report(path, "invalid-enum", f"{value!r} is not one of: {allowed}")
        return MISSING

    def _list(self, item_tp: Any, value: Any, path: Path) -> Any:
        if not isinstance(value, list):
            self.report(path, "wrong-type", f"expected a list, got {_describe(value)}")
            return MISSING
        items = (self.decode(item_tp, item, (*path, i)) for i, item in enumerate(value))
        return [item for item in items if item is not MISSING]

    def _dict(self, value_tp: Any, value: Any, path: Path) -> Any:
        if not isinstance(value, dict):
            self.report(path, "wrong-type", f"expected a mapping, got {_describe(value)}")
            return MISSING
        out = {}
        for key, item in value.items():
            decoded = self.decode(value_tp, item, (*path, key))
            if decoded is not MISSING:
                out[str(key)] = decoded
        return out

    def _object(self, cls: type, value: Any, path: Path) -> Any:
        if not isinstance(value, dict):
            self.report(path, "wrong-type", f"expected a mapping for {cls.__name__}, got {_describe(value)}")
            return MISSING
        hints = _type_hints(cls)
        by_key, required = _fields_by_key(cls, self.snake_case)
        kwargs: dict[str, Any] = {}
        failed = False
        for key, item in value.items():
            known = by_key.get(key)
            if known is None:
                if not getattr(cls, "open_schema", False):
                    self._unknown_field(cls, key, by_key, (*path, key))
                continue
            f = known
            if f.name in kwargs:
                self.report((*path, key), "duplicate-field", f"{key!r} is given twice (camelCase and snake_case)")
                continue
            decoded = self.decode(hints[f.name], item, (*path, key))
            if decoded is MISSING:
                failed = True
                continue
            kwargs[f.name] = decoded
        for f in required:
            if f.name not in kwargs:
                if not failed:
                    self.report(path, "missing-field", f"{cls.__name__} needs the field {self.key_of(f)!r}")
                return MISSING
        return cls(**kwargs)

    def _unknown_field(self, cls: type, key: str, known: dict[str, Any], path: Path) -> None:
        severity = Severity.WARNING if self.lenient else Severity.ERROR
        choices = sorted({self.key_of(f) for f in known.values()})
        close = _closest(key, choices)
        hint = f"; did you mean {close!r}?" if close else f"; known fields: {', '.join(choices)}"
        self.report(path, "unknown-field", f"{cls.__name__} has no field {key!r}{hint}", severity)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a model class (resolving them is slow; big trees decode thousands of objects)."""
    return typing.get_type_hints(cls)


def _pick_union_member(tp: Any, value: Any) -> Any:
    """The member of `A | B` that fits the value's shape (e.g. `waves: [1, 50%]` is `int | str`)."""
    members = [a for a in get_args(tp) if a is not type(None)]
    for member in members:
        if isinstance(member, type) and isinstance(value, member) and not isinstance(value, bool):
            return member
    return members[0]


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _closest(key: str, choices: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, choices, n=1, cutoff=0.75)
    return found[0] if found else None


def _str(d: Decoder, value: Any, path: Path) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # YAML reads `v1` as a string but `1` as an int; Kubernetes accepts both here
    d.report(path, "wrong-type", f"expected a string, got {_describe(value)}")
    return MISSING


def _int(d: Decoder, value: Any, path: Path) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    d.report(path, "wrong-type", f"expected a whole number, got {_describe(value)}")
    return MISSING


def _float(d: Decoder, value: Any, path: Path) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    d.report(path, "wrong-type", f"expected a number, got {_describe(value)}")
    return MISSING


def _bool(d: Decoder, value: Any, path: Path) -> Any:
    if isinstance(value, bool):
        return value
    d.report(path, "wrong-type", f"expected true or false, got {_describe(value)}")
    return MISSING


def _duration(d: Decoder, value: Any, path: Path) -> Any:
    if not isinstance(value, str):
        d.report(path, "invalid-duration", f"expected a duration such as 500ms or 10s, got {_describe(value)}")
        return MISSING
    try:
        return Duration.parse(value)
    except DurationError as exc:
        d.report(path, "invalid-duration", str(exc))
        return MISSING


_SCALARS: dict[Any, Callable[[Decoder, Any, Path], Any]] = {
    str: _str,
    int: _int,
    float: _float,
    bool: _bool,
    Duration: _duration,
}
