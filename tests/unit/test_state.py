"""The state store: snapshots survive a reopen byte for byte; history is kept in order."""

from __future__ import annotations

from pathlib import Path

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from reconciler.state import StateStore
from reconciler.translate.snapshot import Snapshot


def test_snapshot_and_fleet_survive_reopen(tmp_path: Path) -> None:
    one = Snapshot.build([cluster_pb2.Cluster(name="c1"), listener_pb2.Listener(name="l")])
    two = Snapshot.build([cluster_pb2.Cluster(name="c2"), listener_pb2.Listener(name="l")])
    store = StateStore(tmp_path)
    store.record_applied("edge", "sha1", one, started_at=1.0)
    store.record_applied("edge", "sha2", two, started_at=2.0)
    store.record_applied("edge", "sha3", two, started_at=3.0, changed=False)
    store.record_rejected("edge", "sha4", "bad yaml", started_at=4.0)
    store.set_meta("last_seen_head", "sha4")
    store.close()

    reopened = StateStore(tmp_path)
    (record,) = reopened.fleets()
    assert (record.applied_revision, record.applied_version) == ("sha3", two.version)
    loaded = reopened.load_snapshot(record.applied_version)
    assert loaded is not None and loaded.version == two.version
    assert [r.body for r in loaded.all_resources()] == [r.body for r in two.all_resources()]
    assert reopened.load_snapshot(one.version) is not None  # older snapshots stay for rollbacks
    assert [(h.revision, h.result) for h in reopened.history("edge")] == [
        ("sha4", "Rejected"),
        ("sha2", "Succeeded"),
        ("sha1", "Succeeded"),
    ]
    assert reopened.get_meta("last_seen_head") == "sha4"
    assert reopened.load_snapshot("unknown") is None
