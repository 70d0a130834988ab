"""The garbage-collector policy around builds (reconciler/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from reconciler.heap import BUILD_THRESHOLDS, HeapTrimmer, fewer_full_collections, retire_from_collection


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # other tests run with the collector as Python sets it up


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_thresholds_are_raised_only_while_a_build_runs() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_full_collections():
        assert gc.get_threshold() == BUILD_THRESHOLDS
        raise RuntimeError("a build that fails")
    assert gc.get_threshold() == before


def test_survivors_are_frozen_and_garbage_is_not(unfrozen: None) -> None:
    kept, dropped = Cycle(), Cycle()
    gone = weakref.ref(dropped)
    del dropped
    frozen_before = gc.get_freeze_count()
    retire_from_collection()
    assert gone() is None  # the unreachable cycle was collected before the freeze
    assert gc.get_freeze_count() > frozen_before
    assert kept.me is kept


def test_the_heap_is_trimmed_only_once_it_grew_by_more_than_the_slack() -> None:
    resident = iter([500, 400, 450, 464, 470, 390, 380])  # readings in order: before and after each trim
    trims: list[int] = []

    def trim() -> bool:
        trims.append(len(trims))
        return True

    heap = HeapTrimmer(slack=64, resident=lambda: next(resident), trim=trim)
    assert heap.release()  # never trimmed: a cold build's peak goes back (500 → 400)
    assert not heap.release()  # 450: 50 above what the trim left, within the slack, kept for the next revision
    assert not heap.release()  # 464: exactly the slack
    assert heap.release()  # 470: 70 above, trimmed (→ 390)
    assert not heap.release()  # 380: below, measured from the last trim
    assert len(trims) == 2


def test_without_malloc_trim_nothing_is_released() -> None:
    heap = HeapTrimmer(resident=lambda: None, trim=lambda: False)
    assert not heap.release()
    assert not heap.release()


def test_this_process_heap_is_trimmed_once_then_kept() -> None:
    heap = HeapTrimmer()
    assert heap.release()  # glibc on Linux, as in CI and production
    assert not heap.release()  # nothing grew by 64 MiB since
