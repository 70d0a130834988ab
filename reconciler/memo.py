"""Memo tables that let a stage reuse, across builds, what it computed from objects that did not change.

The loader hands back the very same Resource objects for a file whose bytes did not change, so a result
computed from such objects can be kept under their identity (`Same`). Tables forget what the latest two
builds did not ask for (`Memo.age` once per build), so memory follows the repo, not its history.
`CarriedResults` does the same for a whole sequence of items at once, at C speed per unchanged item.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, count, islice, repeat
from typing import Any, Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
V = TypeVar("V")
_MISSING: Any = object()
# Past one item in this many out of its place, matching by id in one dict every item between the first and the
# last that changed costs less than one by one.
MOVED_SHARE = 8


class Same:
    """A dict key that is its object's identity. It holds the object, so the id cannot be reused meanwhile."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.obj is self.obj


class Memo(Generic[K, V]):
    """A table of results that forgets what the latest two builds did not ask for."""

    def __init__(self) -> None:
        self._current: dict[K, V] = {}
        self._previous: dict[K, V] = {}

    def get(self, key: K, compute: Callable[[], V]) -> V:
        # Most keys are asked for once per build, and after `age` they are in `_previous`: look there first,
        # which costs one hash of the key less than asking `_current` first (a key `keep` renewed may be in both).
        current = self._current
        value: V = self._previous.pop(key, _MISSING)
        if value is _MISSING:
            value = current.get(key, _MISSING)
            if value is not _MISSING:
                return value
            value = compute()
        current[key] = value
        return value

    def keep(self, entries: Mapping[K, V]) -> None:
        """Count `entries` as asked for by this build (a caller that answered from a coarser table)."""
        self._current.update(entries)

    def age(self) -> None:
        self._previous, self._current = self._current, {}

    def clear(self) -> None:
        self._previous, self._current = {}, {}

    def __len__(self) -> int:
        return len(self._current.keys() | self._previous.keys())


class Span(NamedTuple):
    """Where a sequence differs from the latest build's (`differing_span`)."""

    start: int
    stop_before: int  # the end of the span in the latest sequence
    stop: int  # and in the new one


@dataclass(frozen=True, slots=True)
class Changes(Generic[V]):
    """What `CarriedResults.update` changed: the latest build's results at `dropped` (its positions) are gone
    (`replaced`, in order), this build's at `positions` are other than the latest build had there, and the latest
    build's items from `shifted_from` on are `shift` places further on (an add or a removal moves those after it)."""

    dropped: Sequence[int]
    replaced: list[V]
    positions: Sequence[int]
    shifted_from: int = 0
    shift: int = 0


class CarriedResults(Generic[T, V]):
    """One result per item of a sequence, carried from build to build while the item is the very same object.

    `Memo.get` costs a Python call per item. Here a build's items are matched with the latest build's by C-level
    batch operations (`map`, `compress`, dict look-ups), and Python runs only for the items that are not in
    their place. As with `Memo`, what the latest two builds did not use is dropped: the build before the
    latest's results stay for the items the latest did not have, so that a revert finds them again.
    """

    def __init__(self) -> None:
        self.items: tuple[T, ...] = ()
        self.results: list[V] = []  # updated in place
        # Results of the build before for items the latest did not have, by id; `_held` keeps those items alive,
        # so that no other object can have their id meanwhile.
        self._before: dict[int, V] = {}
        self._held: Sequence[T] = ()

    def update(self, items: Sequence[T], refresh: Callable[[T, V | None], V]) -> Changes[V]:
        """Make `results` those of `items`: the latest build's result for each item it had, and for each other
        item `refresh(item, kept)`, with `kept` the result an earlier build had for it, if any. Returns what
        changed; the work follows it, not the number of items.
        """
        items = tuple(items)
        size, latest = len(items), self.items
        if size == len(latest):
            changed = list(compress(range(size), map(operator.is_not, items, latest)))
            if len(changed) <= 1 + size // MOVED_SHARE:  # one at least: the most common edit, in any repo
                return self._patch(items, changed, refresh)
        # Items added or removed (or many changed): what lies between the unchanged head and tail is matched by id.
        return self._splice(items, differing_span(items, latest), refresh)

    def refresh_at(self, positions: Iterable[int], refresh: Callable[[T, V | None], V]) -> None:
        """Let `refresh(item, result)` replace the results at `positions` (whose inputs changed, say)."""
        items, results = self.items, self.results
        for i in positions:
            results[i] = refresh(items[i], results[i])

    def _patch(self, items: tuple[T, ...], changed: list[int], refresh: Callable[[T, V | None], V]) -> Changes[V]:
        before, results = self.items, self.results
        replaced = [results[i] for i in changed]
        by_id = {id(before[i]): result for i, result in zip(changed, replaced, strict=True)}  # moved items
        fresh = [refresh(items[i], by_id.get(id(items[i]), self._before.get(id(items[i])))) for i in changed]
        for i, result in zip(changed, fresh, strict=True):  # only once every `refresh` is through
            results[i] = result
        self._before, self._held = by_id, [before[i] for i in changed]
        self.items = items
        return Changes(changed, replaced, changed)

    def _splice(self, items: tuple[T, ...], span: Span, refresh: Callable[[T, V | None], V]) -> Changes[V]:
        """Renew the results of `items[start:stop]`, which stand where the latest build had `[start:stop_before]`."""
        start, stop_before, stop = span
        gone, replaced = self.items[start:stop_before], self.results[start:stop_before]
        latest = dict(zip(map(id, gone), replaced, strict=True))  # an item may have moved within the span
        fresh: list[Any] = list(map(latest.get, map(id, items[start:stop]), repeat(_MISSING)))
        for i in compress(range(len(fresh)), map(operator.is_, fresh, repeat(_MISSING))):
            fresh[i] = refresh(items[start + i], self._before.get(id(items[start + i])))
        self.results[start:stop_before] = fresh  # only once every `refresh` is through
        self._before, self._held = latest, gone
        self.items = items
        return Changes(range(start, stop_before), replaced, range(start, stop), stop_before, stop - stop_before)

    def __len__(self) -> int:
        """How many results are kept: the latest build's, and the build before's for items the latest did not have."""
        return len(self.items) + len(self._before.keys() - set(map(id, self.items)))


class FileVersions:
    """The files (path → content) a stage saw last, to tell what a later set of files changed.

    By identity first: the daemon's source hands back the very same bytes objects for unchanged files, so 10k
    files cost a C-level identity check each; contents equal but not identical are then compared, never assumed.
    Kept as two lists, not a dict: a copy of a dict this size costs several times more, and look-ups in it miss
    the CPU's caches (the secret scan's set difference of paths cost ~1 ms at 10k files).
    """

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._contents: list[bytes] = []

    def changed(self, files: Mapping[str, bytes], paths: list[str]) -> dict[str, bytes | None]:
        """The paths added, removed or given other content in `files` (whose keys, in order, are `paths`) since
        the latest `remember`, each with its content then (None: added). Everything, before any `remember`."""
        last = self._contents
        suspects: dict[str, bytes | None]
        if not last:
            return dict.fromkeys(paths)
        if paths == self._paths:  # the common case: the same files in the same order, and the cheapest
            suspects = dict(compress(zip(paths, last, strict=True), map(operator.is_not, files.values(), last)))
        else:
            before = dict(zip(self._paths, last, strict=True))
            differing_paths = compress(
                paths, map(operator.is_not, map(files.__getitem__, paths), map(before.get, paths))
            )
            suspects = {path: before.get(path) for path in differing_paths}
            suspects.update((path, before[path]) for path in before.keys() - files.keys())
        return {path: raw for path, raw in suspects.items() if raw != files.get(path)}

    def remember(self, files: Mapping[str, bytes], paths: list[str]) -> None:
        """`files` (keys `paths`) are what the next `changed` compares with."""
        self._paths, self._contents = paths, list(files.values())


def differing_span(items: Sequence[T], latest: Sequence[T]) -> Span:
    """Where `items` differ from `latest`, found at C speed: `(start, stop_before, stop)` such that `items[start:stop]`
    stand where `latest[start:stop_before]` stood, and the items before and after are the very same objects.
    One item added, removed or replaced costs one comparison per item."""
    shorter = min(len(items), len(latest))
    start = _same_for(items, latest, shorter)
    tail = _same_for(reversed(items), reversed(latest), shorter - start)
    return Span(start, len(latest) - tail, len(items) - tail)


def identity_changes(items: Sequence[T], latest: Sequence[T]) -> tuple[list[T], list[T]]:
    """The items of `items` that are not in `latest` and those of `latest` not in `items`, by identity, each in
    order. Only the `differing_span` is searched, by sets of ids: thousands of items cost C-speed passes."""
    start, stop_before, stop = differing_span(items, latest)
    new, old = items[start:stop], latest[start:stop_before]
    new_ids, old_ids = set(map(id, new)), set(map(id, old))
    added = list(compress(new, map(operator.not_, map(old_ids.__contains__, map(id, new)))))
    removed = list(compress(old, map(operator.not_, map(new_ids.__contains__, map(id, old)))))
    return added, removed


def _same_for(items: Iterable[T], latest: Iterable[T], most: int) -> int:
    """For how many places from the start, up to `most`, `items` are the very objects of `latest`."""
    return next(compress(count(), map(operator.is_not, islice(items, most), latest)), most)
