"""State store schema 2: a route configuration is stored as content-addressed pieces (one per virtual host), so a
revision writes what changed; pieces are pruned with the last resource holding them; schema-1 stores migrate."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.synthetic import RepoShape, SyntheticRepo, change_destination, generate, single_gateway_vs
from reconciler.pipeline import build
from reconciler.pipeline_cache import BuildCache
from reconciler.state import StateStore
from reconciler.translate.snapshot import ROUTE, Snapshot, content_digest
from tests.unit.old_state_schemas import SCHEMA_1

FLEET = "edge-0"


def _revisions(count: int) -> Iterator[dict[str, Snapshot]]:
    """Each fleet's snapshot at `count` successive revisions of a small repo, each moving one VirtualService of
    FLEET to another service (built with one cache, so unchanged parts are the same objects, as in the daemon)."""
    repo: SyntheticRepo = generate(RepoShape(virtual_services=24))
    files, cache = repo.files(), BuildCache()
    for i in range(count):
        if i:
            repo, changed = change_destination(repo, single_gateway_vs(repo, i).index)
            files[changed.path] = repo.files()[changed.path]
        yield dict(build(files, cache=cache).snapshots)


@pytest.fixture(scope="module")
def revisions() -> list[dict[str, Snapshot]]:
    return list(_revisions(6))


def _count(store: StateStore, sql: str) -> int:
    return int(store._db.execute(sql).fetchone()[0])


def _pieces_of(*snapshots: Snapshot) -> set[str]:
    return {content_digest(part) for s in snapshots for r in s.all_resources() for part in r.parts}


def _roll(store: StateStore, fleet: str, revision: str, snapshot: Snapshot, result: str = "Succeeded") -> None:
    store.begin_rollout(fleet, revision, snapshot, "rollout", started_at=1.0)
    store.finish_rollout(fleet, revision, "rollout", result, "", 1.0, {})


def _assert_same_resources(loaded: Snapshot | None, snapshot: Snapshot) -> None:
    assert loaded is not None and loaded.version == snapshot.version
    for resource in snapshot.all_resources():
        back = loaded.resources[resource.type_url][resource.name]
        assert (back.digest, back.parts, back.body) == (resource.digest, resource.parts, resource.body)


def test_a_route_configuration_reads_back_with_its_parts_also_after_a_reopen(
    tmp_path: Path, revisions: list[dict[str, Snapshot]]
) -> None:
    snapshot = revisions[0][FLEET]
    routes = snapshot.of_type(ROUTE).values()
    assert routes and all(len(r.parts) > 2 for r in routes)  # the case under test: joined from parts
    store = StateStore(tmp_path)
    store.begin_rollout(FLEET, "r0", snapshot, "rollout", started_at=1.0)
    assert _count(store, f"SELECT count(*) FROM resources WHERE type_url = '{ROUTE}' AND length(body) > 0") == 0
    _assert_same_resources(store.load_snapshot(snapshot.version), snapshot)
    store.close()
    reopened = StateStore(tmp_path)
    _assert_same_resources(reopened.load_snapshot(snapshot.version), snapshot)
    assert _count(reopened, "SELECT count(*) FROM pieces") == len(_pieces_of(snapshot))


def test_a_revision_changing_one_virtual_host_writes_one_piece_and_no_whole_body(
    tmp_path: Path, revisions: list[dict[str, Snapshot]]
) -> None:
    before, after = revisions[0][FLEET], revisions[1][FLEET]
    store = StateStore(tmp_path)
    _roll(store, FLEET, "r0", before)
    pieces, body_bytes = (
        _count(store, "SELECT count(*) FROM pieces"),
        _count(store, "SELECT sum(length(body)) FROM resources"),
    )
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # what reaches SQLite: an INSERT per row offered
    store.begin_rollout(FLEET, "r1", after, "rollout", started_at=2.0)
    store._db.set_trace_callback(None)
    assert _count(store, "SELECT count(*) FROM pieces") == pieces + 1
    assert _count(store, "SELECT sum(length(body)) FROM resources") == body_bytes  # the route config: pieces only
    assert sum(s.startswith("INSERT OR IGNORE INTO pieces") for s in statements) == 1  # unchanged ones not offered
    assert sum(s.startswith("INSERT INTO resources") for s in statements) == 1
    _assert_same_resources(store.load_snapshot(after.version), after)


def test_pruning_drops_the_pieces_only_dropped_snapshots_held_and_keeps_shared_ones(
    tmp_path: Path, revisions: list[dict[str, Snapshot]]
) -> None:
    store = StateStore(tmp_path)
    for fleet, snapshot in revisions[0].items():
        _roll(store, fleet, "r0", snapshot)
    shared = _pieces_of(revisions[0][FLEET]) & _pieces_of(revisions[0]["edge-1"])
    assert shared  # the same virtual host (a VirtualService bound in both fleets) and route config fields
    for n, snapshots in enumerate(revisions[1:], start=1):  # a long run: the table follows what is kept
        _roll(store, FLEET, f"r{n}", snapshots[FLEET])
        kept = _pieces_of(snapshots[FLEET], revisions[0]["edge-1"])
        assert _count(store, "SELECT count(*) FROM pieces") == len(kept)
    store.begin_rollout(FLEET, "bad", revisions[0][FLEET], "rollout", started_at=9.0)
    store.finish_rollout(FLEET, "bad", "rollout", "Reverted", "5xx", 9.0, {})  # its own pieces go, last good's stay
    assert _count(store, "SELECT count(*) FROM pieces") == len(_pieces_of(revisions[-1][FLEET], revisions[0]["edge-1"]))
    _assert_same_resources(store.load_snapshot(revisions[-1][FLEET].version), revisions[-1][FLEET])
    store.forget_fleet(FLEET)
    assert _count(store, "SELECT count(*) FROM pieces") == len(_pieces_of(revisions[0]["edge-1"]))
    _assert_same_resources(store.load_snapshot(revisions[0]["edge-1"].version), revisions[0]["edge-1"])
    _roll(store, FLEET, "again", revisions[-1][FLEET])  # its pieces were pruned: stored again, not assumed there
    _assert_same_resources(store.load_snapshot(revisions[-1][FLEET].version), revisions[-1][FLEET])


def test_a_failed_transaction_leaves_no_piece_and_the_retry_stores_them(
    tmp_path: Path, revisions: list[dict[str, Snapshot]]
) -> None:
    store = StateStore(tmp_path)
    store._db.execute(
        "CREATE TRIGGER lost_power BEFORE INSERT ON rollouts BEGIN SELECT RAISE(ABORT, 'lost power'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="lost power"):  # after the pieces, in the same transaction
        store.begin_rollout(FLEET, "r0", revisions[0][FLEET], "rollout", started_at=1.0)
    assert (_count(store, "SELECT count(*) FROM pieces"), _count(store, "SELECT count(*) FROM resources")) == (0, 0)
    store._db.execute("DROP TRIGGER lost_power")
    store.begin_rollout(FLEET, "r0", revisions[0][FLEET], "rollout", started_at=1.0)
    _assert_same_resources(store.load_snapshot(revisions[0][FLEET].version), revisions[0][FLEET])


def test_a_schema_1_store_is_migrated_and_its_whole_bodies_still_load(
    tmp_path: Path, revisions: list[dict[str, Snapshot]]
) -> None:
    old, new = revisions[0][FLEET], revisions[1][FLEET]
    with sqlite3.connect(tmp_path / StateStore.FILENAME) as db:
        db.executescript(SCHEMA_1)
        db.executemany(
            "INSERT INTO resources VALUES (?, ?, ?, ?)",
            [(r.digest, r.type_url, r.name, r.body) for r in old.all_resources()],
        )
        db.execute(
            "INSERT INTO snapshots VALUES (?, 1.0, ?)", (old.version, "\n".join(r.digest for r in old.all_resources()))
        )
        db.execute("INSERT INTO fleets VALUES (?, 'r0', ?, 'r0', ?, '', 1.0)", (FLEET, old.version, old.version))
    store = StateStore(tmp_path)
    assert _count(store, "PRAGMA user_version") == 2
    loaded = store.load_snapshot(old.version)
    assert loaded == old and all(not r.parts for r in loaded.all_resources())  # rows stored whole stay whole
    _roll(store, FLEET, "r1", new)  # the first revision after the upgrade: pieces, and the old whole rows pruned
    store.close()
    reopened = StateStore(tmp_path)
    _assert_same_resources(reopened.load_snapshot(new.version), new)
    assert reopened.load_snapshot(old.version) is None
    assert _count(reopened, f"SELECT count(*) FROM resources WHERE type_url = '{ROUTE}' AND length(body) > 0") == 0
    assert _count(reopened, "SELECT count(*) FROM pieces") == len(_pieces_of(new))
