"""Decode plain YAML data into the typed model, strictly, with a finding at the exact place of each problem.

The dataclasses in `model` are the schema: field types say what is accepted, fields without a default are
required, and YAML keys are the camelCase form of the field names (Istio's JSON form; the snake_case proto
form is accepted too, as istiod does). Unknown keys are errors, unlike istiod which drops them silently.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin

from reconciler.diagnostics import Finding, Location, Severity
from reconciler.manifests.durations import Duration, DurationError
from reconciler.manifests.yamldoc import Document, Path

# The values the value checks (validation/values.py) may object to are the ones that are not *plain*: text that
# is not ASCII (only such text can hold a lone surrogate), integers beyond 32 bits, numbers that are not finite,
# durations longer than Go's, and whatever an `Any` field holds. The decoder notes whether a document held any
# (`Decoder.plain_values`), so that validation may skip the walk of a spec that holds none.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Go's time.Duration is an int64 of nanoseconds; ParseDuration refuses anything longer (about 292 years).
MAX_DURATION_NANOS = 2**63 - 1


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
        self.doc = doc
        self.file = file
        self.resource = resource
        self.lenient = lenient
        self.findings: list[Finding] = []
        self.plain_values = True  # every value decoded so far is plain (see INT32_MIN)

    def location(self, path: Path) -> Location:
        line, column = self.doc.position(path)
        return Location(self.file, line, column)

    def report(self, path: Path, code: str, message: str, severity: Severity = Severity.ERROR) -> None:
        self.findings.append(Finding(severity, code, message, self.location(path), self.resource))

    def decode(self, tp: Any, value: Any, path: Path) -> Any:
        convert = converter(tp, self.snake_case)
        return convert(self, value, path[:-1], path[-1]) if path else convert(self, value, (), None)


# ---------------------------------------------------------------------------------------------- converters

# A converter decodes the value found at `parent` + `key` (`key` None: at `parent` itself). The path is passed
# in two parts so that it is only built for a container or a finding, not for each of a document's scalars.
Converter = Callable[[Decoder, Any, Path, "str | int | None"], Any]


def _at(parent: Path, key: str | int | None) -> Path:
    return parent if key is None else (*parent, key)


@functools.cache
def converter(tp: Any, snake_case: bool) -> Converter:
    """The converter for a schema type, made once per type: the model's types are read here, not per value."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _union(tp, snake_case)
    if origin is Literal:
        return _literal(get_args(tp))
    if origin is list:
        return _list(get_args(tp)[0], snake_case)
    if origin is dict:
        return _dict(get_args(tp)[1], snake_case)
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        return scalar
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _object(tp, snake_case)
    if tp is Any:
        return _any
    raise TypeError(f"schema type {tp!r} is not supported")  # a bug in the model, not user input


def _exact_type(tp: Any) -> Any:  # str, bool or None (Any: compared by identity, it narrows nothing)
    """The Python type whose values a converter of `tp` returns as they are, if there is one: checking it in
    place saves a call for each of a document's strings and flags. A string is taken so only if it is ASCII
    (plain: see INT32_MIN); numbers, rarer, go through their converters, which see whether they are plain."""
    if get_origin(tp) in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        return _exact_type(members[0]) if len(members) == 1 else None
    return tp if tp in (str, bool) else None


def _any(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
    d.plain_values = False  # anything at all may be in it
    return value


def _union(tp: Any, snake_case: bool) -> Converter:
    """`A | B | None`: null is None; otherwise the member that fits the value's shape (`waves: [1, 50%]` is
    `int | str`), or else the first member, whose converter says what is wrong."""
    members = [a for a in get_args(tp) if a is not type(None)]
    first = converter(members[0], snake_case)
    if len(members) == 1:
        return _optional(first)
    by_type = [(m, converter(m, snake_case)) for m in members if isinstance(m, type)]

    def convert(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
        if value is None:
            return None
        if not isinstance(value, bool):
            for member, member_converter in by_type:
                if isinstance(value, member):
                    return member_converter(d, value, parent, key)
        return first(d, value, parent, key)

    return convert


def _optional(member: Converter) -> Converter:
    """`A | None`, the model's most common union: no member to choose, so no test of the value's type."""

    def convert(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
        return None if value is None else member(d, value, parent, key)

    return convert


def _literal(choices: tuple[Any, ...]) -> Converter:
    allowed = ", ".join(str(c) for c in choices)
    plain = all(type(c) is str and c.isascii() for c in choices)  # the model's enums are; anything else is noted

    def convert(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
        if not plain:
            d.plain_values = False
        if value in choices:
            return value
        if isinstance(value, str):  # enums are case-insensitive in Istio's parser for protocols
            for choice in choices:
                if isinstance(choice, str) and choice.upper() == value.upper():
                    return choice
        d.report(_at(parent, key), "invalid-enum", f"{value!r} is not one of: {allowed}")
        return MISSING

    return convert


def _list(item_tp: Any, snake_case: bool) -> Converter:
    item, exact = converter(item_tp, snake_case), _exact_type(item_tp)

    def convert(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
        if not isinstance(value, list):
            d.report(_at(parent, key), "wrong-type", f"expected a list, got {_describe(value)}")
            return MISSING
        if exact is not None and all(type(v) is exact and (exact is bool or v.isascii()) for v in value):
            return list(value)
        path = _at(parent, key)
        out = []
        for i, v in enumerate(value):
            decoded = item(d, v, path, i)
            if decoded is not MISSING:
                out.append(decoded)
        return out

    return convert


def _dict(item_tp: Any, snake_case: bool) -> Converter:
    item, exact = converter(item_tp, snake_case), _exact_type(item_tp)

    def convert(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
        if not isinstance(value, dict):
            d.report(_at(parent, key), "wrong-type", f"expected a mapping, got {_describe(value)}")
            return MISSING
        path = _at(parent, key)
        out = {}
        for k, v in value.items():
            decoded = v if type(v) is exact and (exact is bool or v.isascii()) else item(d, v, path, k)
            if decoded is not MISSING:
                name = str(k)
                if not name.isascii():
                    d.plain_values = False
                out[name] = decoded
        return out

    return convert


class _Fields(NamedTuple):
    """What decoding a dataclass looks up, made once per class."""

    by_key: dict[str, tuple[str, Converter, Any]]  # attribute, its converter, its _exact_type
    required: tuple[tuple[str, str], ...]  # attribute, and the key a missing-field finding names
    choices: list[str]  # the keys a did-you-mean hint chooses from


def _object(cls: type, snake_case: bool) -> Converter:
    """A dataclass from a mapping. Its field table is made on first use (field types may name classes that
    are compiled only then) and published whole, as builds may run in several threads."""
    compiled: _Fields | None = None
    open_schema = bool(getattr(cls, "open_schema", False))

    def compile_fields() -> _Fields:
        nonlocal compiled
        hints = _type_hints(cls)
        key_of = (lambda f: f.name) if snake_case else yaml_key
        by_key, needed = _fields_by_key(cls, snake_case)
        compiled = _Fields(
            {k: (f.name, converter(hints[f.name], snake_case), _exact_type(hints[f.name])) for k, f in by_key.items()},
            tuple((f.name, key_of(f)) for f in needed),
            sorted({key_of(f) for f in by_key.values()}),
        )
        return compiled

    def convert(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
        if not isinstance(value, dict):
            d.report(_at(parent, key), "wrong-type", f"expected a mapping for {cls.__name__}, got {_describe(value)}")
            return MISSING
        table, required, choices = compiled or compile_fields()
        path = parent if key is None else (*parent, key)
        kwargs: dict[str, Any] = {}
        failed = False
        for k, item in value.items():
            known = table.get(k)
            if known is None:
                if not open_schema:
                    _unknown_field(d, cls, k, choices, (*path, k))
                continue
            name, field_converter, exact = known
            if name in kwargs:
                d.report((*path, k), "duplicate-field", f"{k!r} is given twice (camelCase and snake_case)")
                continue
            if type(item) is exact and (exact is bool or item.isascii()):
                kwargs[name] = item
                continue
            decoded = field_converter(d, item, path, k)
            if decoded is MISSING:
                failed = True
                continue
            kwargs[name] = decoded
        for name, shown in required:
            if name not in kwargs:
                if not failed:
                    d.report(path, "missing-field", f"{cls.__name__} needs the field {shown!r}")
                return MISSING
        return cls(**kwargs)

    return convert


def _unknown_field(d: Decoder, cls: type, key: str, choices: list[str], path: Path) -> None:
    severity = Severity.WARNING if d.lenient else Severity.ERROR
    close = _closest(key, choices)
    hint = f"; did you mean {close!r}?" if close else f"; known fields: {', '.join(choices)}"
    d.report(path, "unknown-field", f"{cls.__name__} has no field {key!r}{hint}", severity)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a model class (resolving them is slow; big trees decode thousands of objects)."""
    return typing.get_type_hints(cls)


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


def _str(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
    if isinstance(value, str):
        if not value.isascii():
            d.plain_values = False
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # YAML reads `v1` as a string but `1` as an int; Kubernetes accepts both here
    d.report(_at(parent, key), "wrong-type", f"expected a string, got {_describe(value)}")
    return MISSING


def _int(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT32_MIN <= value <= INT32_MAX:
            d.plain_values = False
        return value
    d.report(_at(parent, key), "wrong-type", f"expected a whole number, got {_describe(value)}")
    return MISSING


def _float(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            d.plain_values = False
        return number
    d.report(_at(parent, key), "wrong-type", f"expected a number, got {_describe(value)}")
    return MISSING


def _bool(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
    if isinstance(value, bool):
        return value
    d.report(_at(parent, key), "wrong-type", f"expected true or false, got {_describe(value)}")
    return MISSING


def _duration(d: Decoder, value: Any, parent: Path, key: str | int | None) -> Any:
    if not isinstance(value, str):
        d.report(
            _at(parent, key), "invalid-duration", f"expected a duration such as 500ms or 10s, got {_describe(value)}"
        )
        return MISSING
    try:
        duration = _parse_duration(value)
    except DurationError as exc:
        d.report(_at(parent, key), "invalid-duration", str(exc))
        return MISSING
    if duration.nanos > MAX_DURATION_NANOS:
        d.plain_values = False
    return duration


@functools.lru_cache(maxsize=1024)
def _parse_duration(text: str) -> Duration:
    """Durations repeat across a repo (`timeout: 5s`) and a Duration is immutable: one per spelling will do."""
    return Duration.parse(text)


_SCALARS: dict[Any, Converter] = {
    str: _str,
    int: _int,
    float: _float,
    bool: _bool,
    Duration: _duration,
}
