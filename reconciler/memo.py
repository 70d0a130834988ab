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
from itertools import compress, repeat
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
V = TypeVar("V")
_MISSING: Any = object()
# Past one item in this many out of its place, matching every item by id in one dict costs less than one by one.
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


@dataclass(frozen=True, slots=True)
class InPlace(Generic[V]):
    """What `CarriedResults.update` changed, when every other item stayed in its place."""

    positions: list[int]  # the positions whose item changed, in order
    replaced: list[V]  # the results they held before


class CarriedResults(Generic[T, V]):
    """One result per item of a sequence, carried from build to build while the item is the very same object.

    `Memo.get` costs a Python call per item. Here a build's items are matched with the latest build's by C-level
    batch operations (`map`, `compress`, dict look-ups), and Python runs only for the items that are not in
    their place. As with `Memo`, what the latest two builds did not use is dropped: the build before the
    latest's results stay for the items the latest did not have, so that a revert finds them again.
    """

    def __init__(self) -> None:
        self.items: tuple[T, ...] = ()
        self.results: list[V] = []  # updated in place while the items stay in their places
        # Results of the build before for items the latest did not have, by id; `_held` keeps those items alive,
        # so that no other object can have their id meanwhile.
        self._before: dict[int, V] = {}
        self._held: Sequence[T] = ()

    def update(self, items: Sequence[T], refresh: Callable[[T, V | None], V]) -> InPlace[V] | None:
        """Make `results` those of `items`: the latest build's result for each item it had, and for each other
        item `refresh(item, kept)`, with `kept` the result an earlier build had for it, if any.

        Returns what changed when every other item stayed in its place, or None when items were added, removed
        or moved (then `results` is a new list).
        """
        items = tuple(items)
        count = len(items)
        if count == len(self.items):
            changed = list(compress(range(count), map(operator.is_not, items, self.items)))
            if len(changed) <= 1 + count // MOVED_SHARE:  # one at least: the most common edit, in any repo
                return self._patch(items, changed, refresh)
        self._remap(items, refresh)
        return None

    def refresh_at(self, positions: Iterable[int], refresh: Callable[[T, V | None], V]) -> None:
        """Let `refresh(item, result)` replace the results at `positions` (whose inputs changed, say)."""
        items, results = self.items, self.results
        for i in positions:
            results[i] = refresh(items[i], results[i])

    def _patch(self, items: tuple[T, ...], changed: list[int], refresh: Callable[[T, V | None], V]) -> InPlace[V]:
        before, results = self.items, self.results
        replaced = [results[i] for i in changed]
        by_id = {id(before[i]): result for i, result in zip(changed, replaced, strict=True)}  # moved items
        fresh = [refresh(items[i], by_id.get(id(items[i]), self._before.get(id(items[i])))) for i in changed]
        for i, result in zip(changed, fresh, strict=True):  # only once every `refresh` is through
            results[i] = result
        self._before, self._held = by_id, [before[i] for i in changed]
        self.items = items
        return InPlace(changed, replaced)

    def _remap(self, items: tuple[T, ...], refresh: Callable[[T, V | None], V]) -> None:
        latest = dict(zip(map(id, self.items), self.results, strict=True))
        results: list[Any] = list(map(latest.get, map(id, items), repeat(_MISSING)))
        for i in compress(range(len(items)), map(operator.is_, results, repeat(_MISSING))):
            results[i] = refresh(items[i], self._before.get(id(items[i])))
        self._before, self._held = latest, self.items
        self.items, self.results = items, results

    def __len__(self) -> int:
        """How many results are kept: the latest build's, and the build before's for items the latest did not have."""
        return len(self.items) + len(self._before.keys() - set(map(id, self.items)))
