"""Load a revision's manifests by patching the previous revision's load with the files that changed.

`load_manifests` parses and assembles every file; the daemon's next revision usually changes one. This memo
keeps the previous load (the files it saw, each file's results, the resources, findings and per-kind groups in
load order, and which resources share a key) and redoes only what the changed files touch, so a one-file
change costs about the same in a repo of 10 files or 10k. The result is equal to `load_manifests(files)`
(tests/unit/test_load_memo.py holds us to that).

Finding the changed files must not cost a Python call per file: the daemon's source hands back a new mapping
whose unchanged files are the very same bytes objects, so one C-level pass over the values by identity finds
the candidates, and only those are compared by content.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Generic, TypeVar

from reconciler.diagnostics import Finding
from reconciler.manifests.loader import (
    ManifestSet,
    ResourceKey,
    duplicate_finding,
    group_by_kind,
    is_manifest_path,
    load_file,
    resource_key,
)
from reconciler.manifests.model import Resource
from reconciler.memo import FileVersions

T = TypeVar("T", Resource, Finding)
FileResult = tuple[tuple[Resource, ...], tuple[Finding, ...]]  # a file's resources and findings
_NOTHING: FileResult = ((), ())
# A manifest file, what it yielded (nothing if it is new) and what it yields now (nothing if it is gone).
Change = tuple[str, FileResult, FileResult]
# A resource that holds its key, with its place in load order: its file and its position in that file.
Holder = tuple[str, int, Resource]
_load_order = operator.itemgetter(0, 1)
# Everything a file yields is located in it, and files load in path order: the resources, findings and each
# kind's group are sorted by this, so a file's share of them is found by bisection.
_file_of = operator.attrgetter("location.file")


class DuplicateIndex:
    """Which resources hold each key, and the duplicate-resource findings they make: a revision revisits only
    the keys its changed files hold."""

    def __init__(self) -> None:
        self._single: dict[ResourceKey, Holder] = {}  # the keys held once (most)
        self._shared: dict[ResourceKey, list[Holder]] = {}  # the others, with their holders in load order
        self.findings: tuple[Finding, ...] = ()

    def replace(self, changes: Iterable[Change]) -> None:
        single, shared = self._single, self._shared
        touches_shared = False
        for path, before, after in changes:
            for r in before[0]:
                key = resource_key(r)
                held = shared.pop(key, None)
                if held is not None:
                    touches_shared = True
                    kept = [h for h in held if h[0] != path]
                    if len(kept) > 1:
                        shared[key] = kept
                    elif kept:
                        single[key] = kept[0]
                elif single.get(key, ("",))[0] == path:  # else the file held it twice, and let go of it already
                    del single[key]
            for position, r in enumerate(after[0]):
                key = resource_key(r)
                holder = (path, position, r)
                held = shared.get(key) if shared else None  # (most repos have none: hash the key once)
                if held is not None:
                    insort(held, holder, key=_load_order)
                    touches_shared = True
                elif (other := single.setdefault(key, holder)) is not holder:
                    del single[key]
                    shared[key] = sorted((other, holder), key=_load_order)
                    touches_shared = True
        if touches_shared:
            self.findings = self._findings()

    def _findings(self) -> tuple[Finding, ...]:
        # As `load_manifests` reports them: each holder after the first, in load order.
        later = [(h, held[0]) for held in self._shared.values() for h in held[1:]]
        later.sort(key=lambda pair: _load_order(pair[0]))
        return tuple(duplicate_finding(h[2], first[2]) for h, first in later)


class LoadMemo:
    """The latest load, patched by the next one. Besides it, the results of the files the latest load replaced
    are kept, so that a revert to the revision before parses nothing."""

    def __init__(self) -> None:
        self._start(lenient=False)

    def _start(self, lenient: bool) -> None:
        """Forget every load: the next one parses every file."""
        self._lenient = lenient
        self._files = FileVersions()  # those of the latest load
        self._results: dict[str, FileResult] = {}  # by manifest path
        self._resources = _FileOrdered[Resource]()
        self._findings = _FileOrdered[Finding]()  # those of the files, before the duplicates'
        self._kinds: dict[str, _FileOrdered[Resource]] = {}
        self._duplicates = DuplicateIndex()
        self._manifests = ManifestSet((), grouped={})
        self._replaced: dict[str, tuple[bytes | None, FileResult]] = {}  # path → its content then, and results

    def __len__(self) -> int:
        """How many files' results are kept."""
        return len(self._results) + len(self._replaced)

    def load(self, files: Mapping[str, bytes], lenient: bool) -> ManifestSet:
        if lenient != self._lenient:
            self._start(lenient)
        paths = list(files)
        was = self._files.changed(files, paths)
        changed = sorted(filter(is_manifest_path, was))
        # Parse before changing anything: a load that fails leaves the previous one whole.
        after = {path: self._load_file(path, files[path]) for path in changed if path in files}
        before = {path: self._results.pop(path) for path in changed if path in self._results}
        self._results.update(after)
        self._replaced = {path: (was[path], result) for path, result in before.items()}
        changes = [(path, before.get(path, _NOTHING), after.get(path, _NOTHING)) for path in changed]
        self._files.remember(files, paths)
        if changes:
            self._apply(changes)
        return self._manifests

    def _load_file(self, path: str, raw: bytes) -> FileResult:
        replaced = self._replaced.get(path)
        if replaced is not None and replaced[0] == raw:
            return replaced[1]
        resources, findings = load_file(path, raw, self._lenient)
        return tuple(resources), tuple(findings)

    def _apply(self, changes: Sequence[Change]) -> None:
        self._resources.edit([(path, len(before[0]), after[0]) for path, before, after in changes])
        self._findings.edit(
            [(path, len(before[1]), after[1]) for path, before, after in changes if before[1] or after[1]]
        )
        for kind, kind_edits in _kind_edits(changes).items():
            group = self._kinds.setdefault(kind, _FileOrdered())
            group.edit(kind_edits)
            if not group.items:
                del self._kinds[kind]
        self._duplicates.replace(changes)
        self._manifests = ManifestSet(
            self._resources.items,
            self._findings.items + self._duplicates.findings,
            grouped={kind: group.items for kind, group in self._kinds.items()},
        )


Edit = tuple[str, int, tuple[T, ...]]  # a file, how many of its items there were, what they are now
_new_items = operator.itemgetter(2)  # of an Edit


class _FileOrdered(Generic[T]):
    """Items sorted by the file they come from. Kept as a list, so that replacing a few files' shares moves
    pointers rather than touching every item (in a big build most of them are out of the CPU's caches);
    `items` is the tuple handed out, the very same object until an edit."""

    # Up to this many edits are made in place, each moving the items after it; more (a first load, a big
    # revision) rebuild the list in one pass.
    in_place_edits = 64

    def __init__(self) -> None:
        self._list: list[T] = []
        self.items: tuple[T, ...] = ()

    def edit(self, edits: Sequence[Edit[T]]) -> None:
        """Apply `edits`, given in path order."""
        if not edits:
            return
        if not self._list:  # a first load: nothing to splice into
            self._list = list(chain.from_iterable(map(_new_items, edits)))
            self.items = tuple(self._list)
            return
        starts = []
        start = 0
        for path, count, _ in edits:
            start = bisect_left(self._list, path, start, key=_file_of)
            starts.append(start)
            start += count
        if len(edits) <= self.in_place_edits:
            for start, (_, count, new) in zip(reversed(starts), reversed(edits), strict=True):  # later ones first
                self._list[start : start + count] = new
        else:
            pieces: list[Sequence[T]] = []
            end = 0
            for start, (_, count, new) in zip(starts, edits, strict=True):
                if start > end:
                    pieces.append(self._list[end:start])
                pieces.append(new)
                end = start + count
            pieces.append(self._list[end:])
            self._list = list(chain.from_iterable(pieces))
        self.items = tuple(self._list)


def _kind_edits(changes: Sequence[Change]) -> dict[str, list[Edit[Resource]]]:
    """The edits of each kind's resources; a kind no change touches has none, so its group stays the very
    same tuple and a stage can tell by identity that none of its resources changed."""
    edits: dict[str, list[Edit[Resource]]] = {}
    for path, (before, _), (after, _) in changes:
        if not before and len(after) == 1:  # a new file with one resource, as most are
            edits.setdefault(after[0].kind, []).append((path, 0, after))
            continue
        counts: dict[str, int] = {}
        for r in before:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        for kind, group in _by_kind(after).items():
            edits.setdefault(kind, []).append((path, counts.pop(kind, 0), group))
        for kind, count in counts.items():
            edits.setdefault(kind, []).append((path, count, ()))
    return edits


def _by_kind(resources: tuple[Resource, ...]) -> Mapping[str, tuple[Resource, ...]]:
    if len(resources) == 1:  # most files hold one resource
        return {resources[0].kind: resources}
    return group_by_kind(resources)
