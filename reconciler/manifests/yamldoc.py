"""YAML documents with positions.

PyYAML's constructors forget where a value came from. We compose the node graph instead and build plain
Python data ourselves, remembering the line and column of every mapping key and value, rejecting duplicate
keys (YAML allows the last to win silently, which hides mistakes), and bounding the work an alias-heavy
document ("YAML bomb") can cause.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

try:  # the C composer is ~10x faster; fall back to pure Python where libyaml is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Path = tuple[str | int, ...]

# Node visits allowed per document. Aliases are walked again each time they are referenced, so a bomb of
# nested aliases hits this limit quickly, while a real manifest stays orders of magnitude below it.
MAX_NODES_PER_DOCUMENT = 200_000
# Nesting levels allowed. A manifest nests about 15 deep; the limit keeps the recursive walk far from
# Python's recursion limit, so a hostile document gets a finding instead of a crash.
MAX_DEPTH = 100


# Collections carry no tag but these; others (e.g. `!!python/object`) would be silently dropped otherwise.
_PLAIN_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class YamlError(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Document:
    """One YAML document: its data, where each path sits, and the document's first line."""

    data: Any
    positions: Mapping[Path, tuple[int, int]]
    line: int

    def position(self, path: Path) -> tuple[int, int]:
        """The closest known position of `path` (walking up to its parent if the key is absent)."""
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (self.line, 1))


class FilePositions:
    """Where each path of each document of a file sits, worked out the first time a position is asked for.

    A reader that records no positions (`blockstyle`) hands these out instead of tables: only findings need
    positions, so most files never pay for them, and a file that does pays once for all its documents.
    """

    __slots__ = ("_source", "_tables")

    def __init__(self, source: bytes) -> None:
        self._source = source  # the file's bytes, valid UTF-8
        self._tables: list[Mapping[Path, tuple[int, int]]] | None = None

    def document(self, index: int, start: tuple[int, int]) -> DocumentPositions:
        """The positions of the file's `index`-th non-empty document, which starts at `start`."""
        return DocumentPositions(self, index, start)

    def table(self, index: int) -> Mapping[Path, tuple[int, int]]:
        if self._tables is None:
            self._tables = [doc.positions for doc in load_documents(self._source.decode("utf-8"))]
        return self._tables[index]


class DocumentPositions(Mapping[Path, tuple[int, int]]):
    """One document's positions from its FilePositions; its start is known without reading the file again."""

    __slots__ = ("_file", "_index", "_start")

    def __init__(self, file: FilePositions, index: int, start: tuple[int, int]) -> None:
        self._file = file
        self._index = index
        self._start = start

    def __getitem__(self, path: Path) -> tuple[int, int]:
        return self._start if path == () else self._file.table(self._index)[path]

    def __contains__(self, path: object) -> bool:
        return path == () or path in self._file.table(self._index)

    def __iter__(self) -> Iterator[Path]:
        return iter(self._file.table(self._index))

    def __len__(self) -> int:
        return len(self._file.table(self._index))


class _Builder:
    def __init__(self) -> None:
        self._constructor = yaml.SafeLoader("")  # only its scalar construction is used
        self.positions: dict[Path, tuple[int, int]] = {}
        self._budget = MAX_NODES_PER_DOCUMENT

    def build(self, node: yaml.Node, path: Path) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise YamlError(
                f"the document expands to more than {MAX_NODES_PER_DOCUMENT} nodes; "
                "aliases that expand this much are refused (a 'YAML bomb')",
                node.start_mark.line + 1,
                node.start_mark.column + 1,
            )
        if len(path) > MAX_DEPTH:
            line, column = _mark(node)
            raise YamlError(f"the document nests deeper than {MAX_DEPTH} levels; no manifest needs that", line, column)
        self.positions.setdefault(path, _mark(node))
        if node.tag not in _PLAIN_COLLECTION_TAGS and not isinstance(node, yaml.ScalarNode):
            line, column = _mark(node)
            raise YamlError(f"the tag {node.tag!r} is not allowed in a manifest", line, column)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            line, column = _mark(node)
            raise YamlError(f"cannot read this value: {exc}", line, column) from None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        self._constructor.flatten_mapping(node)  # resolves `<<` merge keys in place
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, column = _mark(key_node)
                raise YamlError("a mapping key must be a plain value, not a list or a mapping", line, column)
            key = self._scalar(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                line, column = _mark(key_node)
                first = self.positions[(*path, key)]
                raise YamlError(
                    f"duplicate key {key!r} (first at line {first[0]}); YAML would silently keep the last one",
                    line,
                    column,
                )
            self.positions[(*path, key)] = _mark(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_documents(text: str) -> Iterator[Document]:
    """Yield each non-empty document of `text`; raises YamlError at the first malformed one."""
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            builder = _Builder()
            data = builder.build(node, ())
            if data is None:
                continue
            yield Document(data, builder.positions, node.start_mark.line + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"malformed YAML: {exc.problem or exc.context}"
        if exc.context and exc.context_mark and exc.problem:
            started = exc.context_mark
            message += f" ({exc.context} at line {started.line + 1}, column {started.column + 1})"
        raise YamlError(message, line, column) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"malformed YAML: {exc}", 1, 1) from None
    finally:
        loader.dispose()
