"""The daemon's use of Python's cyclic garbage collector, around builds that keep large caches alive."""

from __future__ import annotations

import gc


def retire_from_collection() -> None:
    """Move what survived a build (the build cache, snapshots) out of the cyclic collector's sight.

    A full collection rescans every tracked object: 1.6 s at 10k VirtualServices, holding the GIL the ADS
    loop needs. Frozen objects are skipped, and acyclic ones are still freed by reference counting when the
    cache drops them. The young generations are collected first so that garbage is not frozen too
    (measured over 40 revisions at 1k: RSS flat, the frozen count grows by about one object per build).
    """
    gc.collect(1)
    gc.freeze()
