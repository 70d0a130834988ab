"""Memo tables that let a stage reuse, across builds, what it computed from objects that did not change.

The loader hands back the very same Resource objects for a file whose bytes did not change, so a result
computed from such objects can be kept under their identity (`Same`). Tables forget what the latest two
builds did not ask for (`Memo.age` once per build), so memory follows the repo, not its history.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING: Any = object()


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
