"""How the reconciler uses Python's cyclic garbage collector: builds allocate millions of long-lived objects."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# CPython's default (700, 10, 10) runs a full collection each time the surviving objects grew by a quarter,
# each rescanning all that was built so far: five of them took 3.7 s of a 15 s cold build at 10k
# VirtualServices. With full collections a hundred times rarer: cold 10k build CPU 13.7 s -> 10.7 s, same RSS.
# Only while a build runs: a long-running server left with rare full collections keeps cyclic garbage
# (gRPC streams) longer, measured as 49 -> 54 KB RSS per idle ADS stream.
BUILD_THRESHOLDS = (700, 10, 1000)
# Freed heap kept resident between revisions for the next one to reuse (HeapTrimmer): a few revisions' worth of
# response bodies at 10k VirtualServices, ~7 % of the daemon's RSS there.
HEAP_SLACK_BYTES = 64 << 20
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@contextmanager
def fewer_full_collections() -> Iterator[None]:
    """Run a build with BUILD_THRESHOLDS (process-wide while it runs), then restore the previous ones."""
    before = gc.get_threshold()
    gc.set_threshold(*BUILD_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def retire_from_collection() -> None:
    """Move what survived a build (the build cache, snapshots) out of the cyclic collector's sight.

    A full collection rescans every tracked object: 1.6 s at 10k VirtualServices, holding the GIL the ADS
    loop needs. Frozen objects are skipped, and acyclic ones are still freed by reference counting when the
    cache drops them. A full collection first, so that no garbage is frozen: it scans only what is not frozen
    yet, which after the first build is what the last one made (measured over 40 revisions at 1k: RSS flat).
    """
    gc.collect()
    gc.freeze()
    _HEAP.release()


def _resident_bytes() -> int | None:
    """This process's resident set size (Linux: /proc/self/statm), None where that cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def _trim_free_heap() -> bool:
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class HeapTrimmer:
    """Hands the C heap's free pages back to the OS (glibc's malloc_trim), but only once the resident set has
    grown by more than `slack` bytes since the last time.

    A build peaks at about twice what it keeps, and freed pages inside the heap otherwise stay resident (10k VS
    after applying: 984 → 882 MiB): after a cold build the trim is worth it. After a small revision it is not:
    the next revision's response bodies (a 12.5 MB route configuration at 10k VirtualServices) would be written
    into fresh pages, a fault each — that copy measured 8.4 ms on fresh pages and ~2 ms on kept ones, and the
    trim itself ~4 ms. So the heap keeps up to `slack` of free pages for reuse.
    """

    def __init__(
        self,
        slack: int = HEAP_SLACK_BYTES,
        resident: Callable[[], int | None] = _resident_bytes,
        trim: Callable[[], bool] = _trim_free_heap,
    ) -> None:
        self.slack = slack
        self._resident, self._trim = resident, trim
        self._trimmed_at: int | None = None  # resident bytes after the last trim; None: none yet

    def release(self) -> bool:
        """Trim if the heap grew by more than `slack` since the last trim (or never trimmed); whether it did."""
        now = self._resident()
        if now is not None and self._trimmed_at is not None and now - self._trimmed_at <= self.slack:
            return False
        if not self._trim():
            return False
        self._trimmed_at = self._resident()
        return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc: nothing to release this way
        return None


_HEAP = HeapTrimmer()  # the process's one heap
