"""The state store: snapshots survive a reopen byte for byte; rollouts move last good; history is ordered."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from reconciler.state import StateError, StateStore
from reconciler.translate.snapshot import Snapshot
from tests.unit.old_state_schemas import SCHEMA_0

ONE = Snapshot.build([cluster_pb2.Cluster(name="c1"), listener_pb2.Listener(name="l")])
TWO = Snapshot.build([cluster_pb2.Cluster(name="c2"), listener_pb2.Listener(name="l")])


def test_rollouts_move_last_good_and_survive_reopen(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin_rollout("edge", "sha1", ONE, "rollout", started_at=1.0)
    store.finish_rollout("edge", "sha1", "rollout", "Succeeded", "", 1.0, {"waves": []})
    store.begin_rollout("edge", "sha2", TWO, "rollout", started_at=2.0)
    store.finish_rollout("edge", "sha2", "rollout", "Reverted", "5xx over budget", 2.0, {})
    store.mark_unchanged("edge", "sha3")
    store.record_rejected("edge", "sha4", "bad yaml", 4.0, {"findings": []})
    store.set_meta("last_seen_head", "sha4")
    store.close()

    reopened = StateStore(tmp_path)
    (record,) = reopened.fleets()
    assert (record.last_good_revision, record.last_good_version) == ("sha3", ONE.version)
    assert (record.applied_revision, record.applied_version) == ("sha3", ONE.version)
    assert record.quarantined_revision == "sha4"
    loaded = reopened.load_snapshot(record.last_good_version)
    assert loaded is not None and [r.body for r in loaded.all_resources()] == [r.body for r in ONE.all_resources()]
    assert reopened.load_snapshot(TWO.version) is None  # reverted and finished: nothing needs it any more
    assert [(h.revision, h.kind, h.result) for h in reopened.history("edge")] == [
        ("sha4", "rejected", "Rejected"),
        ("sha2", "rollout", "Reverted"),
        ("sha1", "rollout", "Succeeded"),
    ]
    assert reopened.history("edge")[1].reason == "5xx over budget"
    assert reopened.get_meta("last_seen_head") == "sha4"
    assert reopened.load_snapshot("unknown") is None


def test_an_unfinished_rollout_is_found_after_a_crash(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin_rollout("edge", "sha1", ONE, "rollout", started_at=1.0)
    store.close()  # no finish_rollout: the daemon died
    (inflight,) = StateStore(tmp_path).interrupted_rollouts()
    assert (inflight.fleet, inflight.revision, inflight.version) == ("edge", "sha1", ONE.version)


def _rows(store: StateStore, table: str) -> int:
    return int(store._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_snapshots_nothing_needs_are_pruned_and_a_pruned_resource_is_stored_again(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin_rollout("edge", "sha1", ONE, "rollout", started_at=1.0)
    store.finish_rollout("edge", "sha1", "rollout", "Succeeded", "", 1.0, {})
    for attempt in range(3):  # the same bad revision again and again: the store does not grow
        store.begin_rollout("edge", f"bad{attempt}", TWO, "rollout", started_at=2.0)
        assert store.load_snapshot(TWO.version) is not None  # in flight: a restart resumes it
        store.finish_rollout("edge", f"bad{attempt}", "rollout", "Reverted", "5xx", 2.0, {})
        assert store.load_snapshot(TWO.version) is None
        assert (_rows(store, "snapshots"), _rows(store, "resources")) == (1, 2)
    loaded = store.load_snapshot(ONE.version)
    assert loaded is not None and [r.body for r in loaded.all_resources()] == [r.body for r in ONE.all_resources()]


# The schema before PRAGMA user_version 1 (a row per snapshot member), as earlier versions wrote it.
def test_a_store_written_by_an_earlier_version_is_migrated_and_keeps_serving(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / StateStore.FILENAME) as db:
        db.executescript(SCHEMA_0)
        db.executemany(
            "INSERT INTO resources VALUES (?, ?, ?, ?)",
            [(r.digest, r.type_url, r.name, r.body) for r in ONE.all_resources()],
        )
        db.execute("INSERT INTO snapshots VALUES (?, 1.0)", (ONE.version,))
        db.executemany(
            "INSERT INTO snapshot_resources VALUES (?, ?)", [(ONE.version, r.digest) for r in ONE.all_resources()]
        )
        db.execute("INSERT INTO fleets VALUES ('edge', 'sha1', ?, 'sha1', ?, '', 1.0)", (ONE.version, ONE.version))
        db.execute("INSERT INTO rollouts VALUES ('edge', 'sha1', ?, 'rollout', 1.0)", (ONE.version,))
    store = StateStore(tmp_path)
    assert store.load_snapshot(ONE.version) == ONE
    assert [i.version for i in store.interrupted_rollouts()] == [ONE.version]
    store.finish_rollout("edge", "sha1", "rollout", "Succeeded", "", 1.0, {})
    store.begin_rollout("edge", "sha2", TWO, "rollout", started_at=2.0)
    store.finish_rollout("edge", "sha2", "rollout", "Succeeded", "", 2.0, {})
    store.close()
    reopened = StateStore(tmp_path)
    assert reopened.load_snapshot(ONE.version) is None  # superseded as last good, and pruned like any other
    assert reopened.load_snapshot(TWO.version) == TWO
    assert (_rows(reopened, "snapshots"), _rows(reopened, "resources")) == (1, 2)
    assert reopened._db.execute("SELECT name FROM sqlite_master WHERE name = 'snapshot_resources'").fetchone() is None
    assert reopened._db.execute("PRAGMA user_version").fetchone()[0] == 2  # 0 → 1 → 2 in the opening transaction
    assert _rows(reopened, "pieces") == 0  # none of these resources is joined from parts


def test_a_store_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    StateStore(tmp_path).close()
    with sqlite3.connect(tmp_path / StateStore.FILENAME) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="newer version of the reconciler"):
        StateStore(tmp_path)
    with sqlite3.connect(tmp_path / StateStore.FILENAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 99
