"""The garbage-collector policy around builds (reconciler/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from reconciler.heap import BUILD_THRESHOLDS, fewer_full_collections, retire_from_collection


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
