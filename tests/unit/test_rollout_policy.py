"""Wave planning and wave-entry parsing (pure)."""

from __future__ import annotations

import pytest

from reconciler.manifests.model import RolloutPolicy
from reconciler.rollout.health import Counters, counters_from_stats
from reconciler.rollout.policy import WaveSpecError, parse_wave, plan_waves

NODES = ["e", "c", "a", "d", "b"]


@pytest.mark.parametrize(
    ("waves", "expected"),
    [
        ([1, "50%", "100%"], [["a"], ["b", "c"], ["d", "e"]]),
        ([1, "100%"], [["a"], ["b", "c", "d", "e"]]),
        (["100%"], [["a", "b", "c", "d", "e"]]),
        ([2], [["a", "b"], ["c", "d", "e"]]),  # the last wave always completes the fleet
        (["1%"], [["a"], ["b", "c", "d", "e"]]),  # a share rounds up to at least one node
        ([1, 1, "20%"], [["a"], ["b", "c", "d", "e"]]),  # waves that add nobody are skipped
        ([10], [["a", "b", "c", "d", "e"]]),  # more than the fleet: everyone
    ],
)
def test_plan_waves(waves: list[int | str], expected: list[list[str]]) -> None:
    assert plan_waves(RolloutPolicy(waves=waves), NODES) == expected


def test_no_nodes_no_waves() -> None:
    assert plan_waves(RolloutPolicy(waves=[1, "50%"]), []) == []


@pytest.mark.parametrize("spec", ["half", "0%", "150%", 0, "-5%"])
def test_bad_wave_entries(spec: int | str) -> None:
    with pytest.raises(WaveSpecError):
        parse_wave(spec, 10)


def test_counters_exclude_the_admin_listener_and_subtract() -> None:
    stats = {
        "http.outbound_0.0.0.0_8080.downstream_rq_completed": 50,
        "http.outbound_0.0.0.0_8080.downstream_rq_5xx": 5,
        "http.admin.downstream_rq_completed": 1000,
        "http.admin.downstream_rq_5xx": 7,
        "cluster.outbound|80||a.internal.upstream_cx_connect_fail": 3,
        "http.outbound_0.0.0.0_8080.rds.http.8080.update_rejected": 1,
        "cluster_manager.warming_clusters": 0,
        "control_plane.connected_state": 1,
    }
    now = counters_from_stats(stats)
    assert (now.downstream_rq_completed, now.downstream_rq_5xx, now.upstream_cx_connect_fail) == (50, 5, 3)
    delta = now.since(Counters(downstream_rq_completed=20, downstream_rq_5xx=5, update_rejected=1))
    assert (delta.downstream_rq_completed, delta.downstream_rq_5xx, delta.update_rejected) == (30, 0, 0)
    assert delta.connected == 1
