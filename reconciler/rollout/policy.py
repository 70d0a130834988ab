"""Wave planning: which nodes get a change in which wave (pure, deterministic)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from reconciler.manifests.model import RolloutPolicy


class WaveSpecError(ValueError):
    pass


def parse_wave(spec: int | str, fleet_size: int) -> int:
    """A wave entry is a node count (`2`) or a share of the fleet (`50%`), cumulative; at least one node."""
    if isinstance(spec, int):
        count = spec
    else:
        text = spec.strip()
        if not text.endswith("%"):
            raise WaveSpecError(f"wave {spec!r} must be a node count or a percentage such as 50%")
        try:
            share = float(text[:-1])
        except ValueError:
            raise WaveSpecError(f"wave {spec!r} must be a node count or a percentage such as 50%") from None
        if not 0 < share <= 100:
            raise WaveSpecError(f"wave {spec!r} must be a share between 0% and 100%")
        count = math.ceil(fleet_size * share / 100)
    if count < 1:
        raise WaveSpecError(f"wave {spec!r} must reach at least one node")
    return min(count, fleet_size)


def plan_waves(policy: RolloutPolicy, nodes: Sequence[str]) -> list[list[str]]:
    """Split `nodes` (sorted: the order is stable across runs) into waves; the last wave completes the fleet."""
    ordered = sorted(nodes)
    waves: list[list[str]] = []
    reached = 0
    for spec in [*policy.waves, "100%"]:
        target = parse_wave(spec, len(ordered)) if ordered else 0
        if target > reached:
            waves.append(ordered[reached:target])
            reached = target
    return waves
