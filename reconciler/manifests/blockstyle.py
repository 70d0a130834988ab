"""A fast reader for the plain subset of YAML that manifests are written in: block style, one-line scalars.

libyaml parses quickly, but PyYAML then makes a Python node object (two marks, three resolver calls) for every
value, which costs more than all the rest of loading a manifest. Most manifest files use only block mappings and
sequences, one-line scalars, one-line flow collections (`hosts: ["*"]`) and comments, and those can be read line
by line at a fraction of that cost (most lines repeat, and a line is read once).

This reader accepts that subset only and returns None for anything else (block scalars, multi-line or escaped
scalars, anchors, aliases, tags, directives, tabs, unusual line breaks, anything it finds malformed or is unsure
of), so the caller reads that file with `yamldoc` instead. Where it answers, the answer equals what
`yamldoc.load_documents` builds (tests/unit/test_blockstyle.py compares the two); it records no positions: callers
get those from `yamldoc` when they need one, which is rarely.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.nodes import ScalarNode

from reconciler.manifests.yamldoc import MAX_DEPTH, MAX_NODES_PER_DOCUMENT

# Characters libyaml treats specially anywhere in a line (tabs, carriage returns, Unicode line separators, a byte
# order mark, non-printable ones): a file with any of them is left to libyaml.
_UNUSUAL_CHARACTER = re.compile(
    r"[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
# One line: indentation, sequence dashes, a mapping key and its `:`, then a one-line scalar (plain, or quoted
# without escapes) and maybe a comment, or else the rest: nothing, a comment, or what is left to libyaml. A key is
# a plain name-like scalar or a quoted one without escapes.
_LINE = re.compile(
    r"( *)((?:-(?: +|$))*)"
    r"""(?:(?:([A-Za-z0-9_][A-Za-z0-9_./-]*)|'([^']*)'|"([^"\\]*)") *:(?: +|$))?"""
    r"""(?:((?:[^ \-?:,\[\]{}#&*!|>'"%@`]|[-?:](?=[^ ]))(?:[^ :]|:(?=[^ ])| +(?=[^ #]))*)(?: +#.*| *)$"""
    r"""|'((?:[^']|'')*)'(?: +#.*| *)$|"([^"\\]*)"(?: +#.*| *)$|(.*))"""
)
# libyaml refuses implicit keys longer than this.
_MAX_KEY_LENGTH = 1024
# yamldoc refuses a document of more nodes; one that may come near is left to it.
_MAX_ENTRIES = MAX_NODES_PER_DOCUMENT // 2
# Lines up to this long are cached (see _line): manifests repeat short lines, and the cache stays small.
_MAX_CACHED_LINE = 200
# The scalar types a plain scalar may resolve to here; a timestamp or `=` is left to PyYAML.
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_STR_TAG = "tag:yaml.org,2002:str"
# Plain scalars starting with any other character are strings (PyYAML's implicit resolvers are keyed by it).
_RESOLVED_FIRST_CHARACTERS = frozenset(k for k in yaml.SafeLoader.yaml_implicit_resolvers if k)

Entry = tuple[int, bool, Any, Any]  # column, is a sequence item, mapping key, value (or _NESTED)
_NESTED: Any = object()  # an entry whose value is on the following lines (or null)
# Lines without entries that start and end a document.
_DOCUMENT_START = "---"
_DOCUMENT_END = "..."


class _NotPlain(Exception):
    """The text uses YAML this reader leaves to libyaml."""


def load_plain_documents(text: str) -> list[tuple[Any, int, int]] | None:
    """Each non-empty document's data and the line and column where it starts, or None to use `yamldoc`."""
    if _UNUSUAL_CHARACTER.search(text):
        return None
    try:
        return [_document(line, entries) for line, entries in _documents(text.split("\n"))]
    except _NotPlain:
        return None


def _documents(lines: list[str]) -> list[tuple[int, list[Entry]]]:
    """Each document's first line and its entries: one per mapping key and one per sequence dash, in order."""
    documents: list[tuple[int, list[Entry]]] = []
    entries: list[Entry] = []
    opened = False  # a document is open (after `---` or content), so `...` may end it
    ended = False  # after `...` only `---` may follow
    for number, line in enumerate(lines, 1):
        parsed = _line(line) if len(line) <= _MAX_CACHED_LINE else _line.__wrapped__(line)
        if parsed is None:
            continue
        if isinstance(parsed, str):  # a document marker
            if parsed == _DOCUMENT_END and not opened:
                raise _NotPlain  # libyaml refuses `...` that ends no document
            opened = parsed == _DOCUMENT_START
            ended = not opened
            entries = []
        elif not entries:
            if ended:
                raise _NotPlain  # libyaml refuses content after `...` without `---`
            opened = True
            documents.append((number, entries))
            entries.extend(parsed)
        else:
            entries.extend(parsed)
    return documents


@functools.lru_cache(maxsize=16384)
def _line(line: str) -> tuple[Entry, ...] | str | None:
    """The entries of one line; None for a blank or comment line, or a document marker.

    Cached: manifests repeat most of their lines (`- destination:`, `route:`, a service's host), and entries
    are immutable.
    """
    match = _LINE.match(line)
    assert match is not None  # every part of the pattern may be empty
    indent, dashes, plain_key, single_key, double_key, plain, single, double, rest = match.groups()
    if plain is not None:
        value = plain if plain[0] not in _RESOLVED_FIRST_CHARACTERS else _typed(plain)
    elif single is not None:
        value = single.replace("''", "'")
    elif double is not None:
        value = double
    elif not rest or rest[0] == "#":
        value = _NESTED
    elif rest[0] in "[{":
        value = _Flow(rest)
    else:
        raise _NotPlain  # a value this reader does not read (block scalar, alias, tag, ...)
    column = len(indent)
    entries: list[Entry] = []
    for dash in dashes.split("-")[1:-1]:  # all but the last dash: `- - x` is a sequence in a sequence
        entries.append((column, True, None, _NESTED))
        column += 1 + len(dash)
    if plain_key is not None:
        key = plain_key if plain_key[0] not in _RESOLVED_FIRST_CHARACTERS else _key(plain_key)
    elif single_key is not None or double_key is not None:
        key = single_key if single_key is not None else double_key
    elif dashes:
        return (*entries, (column, True, None, value))
    elif value is _NESTED:
        return None
    elif column == 0 and plain in (_DOCUMENT_START, _DOCUMENT_END):
        return plain
    else:
        raise _NotPlain  # a bare scalar: a multi-line one, a root scalar, or a mistake
    if len(key) > _MAX_KEY_LENGTH:
        raise _NotPlain  # libyaml refuses such a key
    if dashes:
        entries.append((column, True, None, _NESTED))  # `- key: value`: a mapping as a sequence item
        column += len(dashes) - dashes.rindex("-")
    return (*entries, (column, False, key, value))


def _document(line: int, entries: list[Entry]) -> tuple[Any, int, int]:
    column, is_item, _, _ = entries[0]
    if is_item or len(entries) > _MAX_ENTRIES:
        raise _NotPlain  # a sequence is no manifest (yamldoc's findings), and yamldoc applies its size limit
    return _tree(entries), line, column + 1


def _tree(entries: list[Entry]) -> dict[str, Any]:
    """The root mapping the entries make, nested by their columns.

    One loop with a stack of the enclosing blocks, not a call per block: a manifest opens a block for most of
    its entries (`- destination:` then `host: ...`).
    """
    root: dict[str, Any] = {}
    # The innermost open block: its column, whether it is a sequence, and the list or dict being filled.
    out: Any = root
    column, is_sequence = entries[0][0], False
    enclosing: list[tuple[int, bool, Any]] = []
    nested = False  # the previous entry's value is on the following lines: this entry may open it
    nested_key: Any = None
    for entry_column, is_item, key, value in entries:
        # A mapping's value may be a sequence in the mapping's own column (`hosts:` then `- a`).
        if nested and (entry_column > column or (entry_column == column and is_item and not is_sequence)):
            if len(enclosing) + 2 > MAX_DEPTH // 2:
                raise _NotPlain  # let yamldoc apply its limit
            child: Any = [] if is_item else {}
            if is_sequence:
                out[-1] = child
            else:
                out[nested_key] = child
            enclosing.append((column, is_sequence, out))
            column, is_sequence, out = entry_column, is_item, child
        while entry_column != column or is_item is not is_sequence:
            # The innermost block ends here. What follows must belong to an enclosing block: one in a lower
            # column, or (after a sequence) the mapping that holds it in the same column. Anything else YAML
            # refuses or reads some other way, and so is a second root indented less than the first.
            if entry_column > column or (entry_column == column and not is_sequence) or not enclosing:
                raise _NotPlain
            column, is_sequence, out = enclosing.pop()
        nested = value is _NESTED
        if nested:
            value, nested_key = None, key  # stays None unless the next entry opens the block
        elif type(value) is _Flow:
            value = value.data()
        if is_sequence:
            out.append(value)
        elif key in out:
            raise _NotPlain  # yamldoc reports the duplicate
        else:
            out[key] = value
    return root


# ---------------------------------------------------------------------------------------------- flow style

# One token of a one-line flow collection: an indicator, `:` before a space, a quoted scalar without escapes, or a
# plain scalar (inner spaces allowed) without the characters that would make it mean something else or end it.
_FLOW_TOKEN = re.compile(
    r""" *(?:([\[\]{},])|(:)(?= )|'((?:[^']|'')*)'|"([^"\\]*)"|"""
    r"""((?:[^ \[\]{},:#'"&*!|>%@`?-]|-(?=[^ \[\]{},:#]))(?:[^\[\]{},:#]*[^ \[\]{},:#])?))"""
)
_FLOW_END = re.compile(r" *(?: #.*)?")


class _FlowSequence(tuple[Any, ...]):
    """A flow sequence as read, immutable so that the line cache may hold it."""


class _FlowMapping(tuple[tuple[str, Any], ...]):
    """A flow mapping as read: its (key, value) pairs."""


class _Flow:
    """A value written as a one-line flow collection (`[a, b]`, `{name: x}`), read when the line is read."""

    __slots__ = ("_value",)

    def __init__(self, text: str) -> None:
        tokens = _flow_tokens(text)
        self._value, end = _flow_node(tokens, 0, 1)
        if end != len(tokens):
            raise _NotPlain

    def data(self) -> Any:
        """Fresh lists and dicts: the documents that share a cached line must not share its collections."""
        return _thaw(self._value)


def _flow_tokens(text: str) -> list[tuple[str | None, ...]]:
    tokens = []
    position = 0
    while True:
        match = _FLOW_TOKEN.match(text, position)
        if match is None or match.end() == position:
            break
        tokens.append(match.groups())
        position = match.end()
    if _FLOW_END.fullmatch(text, position) is None:
        raise _NotPlain  # something else after the collection, or inside it (a comment, an alias, ...)
    return tokens


def _flow_node(tokens: list[tuple[str | None, ...]], i: int, depth: int) -> tuple[Any, int]:
    """The node that starts at token `i`, and the index after it."""
    if i >= len(tokens) or depth > MAX_DEPTH // 2:
        raise _NotPlain
    indicator, _, single, double, plain = tokens[i]
    if indicator == "[":
        items, i = _flow_entries(tokens, i + 1, "]", depth, lambda i: _flow_node(tokens, i, depth + 1))
        return _FlowSequence(items), i
    if indicator == "{":
        pairs, i = _flow_entries(tokens, i + 1, "}", depth, lambda i: _flow_pair(tokens, i, depth + 1))
        if len({key for key, _ in pairs}) != len(pairs):
            raise _NotPlain  # yamldoc reports the duplicate
        return _FlowMapping(pairs), i
    if plain is not None:
        return (plain if plain[0] not in _RESOLVED_FIRST_CHARACTERS else _typed(plain)), i + 1
    if single is not None:
        return single.replace("''", "'"), i + 1
    if double is not None:
        return double, i + 1
    raise _NotPlain  # `,`, `:`, `]` or `}` where a node should be (an empty entry, `[a: 1]`, ...)


def _flow_entries(
    tokens: list[tuple[str | None, ...]], i: int, close: str, depth: int, entry: Callable[[int], tuple[Any, int]]
) -> tuple[list[Any], int]:
    """Entries separated by commas up to `close` (no trailing comma: left to libyaml, like empty entries)."""
    entries: list[Any] = []
    if i < len(tokens) and tokens[i][0] == close:
        return entries, i + 1
    while True:
        value, i = entry(i)
        entries.append(value)
        if i < len(tokens) and tokens[i][0] == ",":
            i += 1
        elif i < len(tokens) and tokens[i][0] == close:
            return entries, i + 1
        else:
            raise _NotPlain


def _flow_pair(tokens: list[tuple[str | None, ...]], i: int, depth: int) -> tuple[tuple[str, Any], int]:
    if i + 1 >= len(tokens) or tokens[i + 1][1] is None:
        raise _NotPlain  # a key without `: ` and a value
    _, _, single, double, plain = tokens[i]
    if plain is not None:
        key = _key(plain)
    elif single is not None:
        key = single.replace("''", "'")
    elif double is not None:
        key = double
    else:
        raise _NotPlain  # a collection as a key
    value, i = _flow_node(tokens, i + 2, depth)
    return (key, value), i


def _thaw(value: Any) -> Any:
    if type(value) is _FlowSequence:
        return [_thaw(v) for v in value]
    if type(value) is _FlowMapping:
        return {k: _thaw(v) for k, v in value}
    return value


# ---------------------------------------------------------------------------------------------- scalars


def _key(text: str) -> str:
    value = _typed(text)
    return value if isinstance(value, str) else str(value)  # `1:` or `true:` are the keys "1" and "True"


@functools.lru_cache(maxsize=4096)
def _typed(text: str) -> Any:
    """A plain scalar's value, typed exactly as PyYAML's safe loader types it (YAML 1.1: `yes` is true)."""
    loader = yaml.SafeLoader("")
    tag = loader.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
    if tag not in _PLAIN_TAGS:
        raise _NotPlain
    if tag == _STR_TAG:
        return text
    return loader.construct_object(ScalarNode(tag, text), deep=True)
