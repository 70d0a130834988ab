"""Durable state in SQLite: what each fleet runs, the snapshots needed to serve it, and history.

Resources are stored once by content digest, so successive revisions share unchanged resources; a resource joined
from parts (a route configuration: one part per virtual host) is stored as its list of pieces, each piece once by
content digest, so a revision that changes one virtual host writes that host's bytes, not the megabytes of the
route configuration. Every write is one transaction (WAL, synchronous=FULL): a daemon killed at any point restarts
on a state that was fully written before, never on half of one.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress, repeat
from pathlib import Path
from typing import Any, cast

from reconciler.translate.snapshot import Snapshot, XdsResource, content_digest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    digest TEXT PRIMARY KEY, type_url TEXT NOT NULL, name TEXT NOT NULL, body BLOB NOT NULL,
    parts TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS pieces (digest TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS resources_in_pieces ON resources (digest) WHERE parts != '';
CREATE TABLE IF NOT EXISTS snapshots (
    version TEXT PRIMARY KEY, created_at REAL NOT NULL, members TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS fleets (
    name TEXT PRIMARY KEY,
    applied_revision TEXT NOT NULL DEFAULT '', applied_version TEXT NOT NULL DEFAULT '',
    last_good_revision TEXT NOT NULL DEFAULT '', last_good_version TEXT NOT NULL DEFAULT '',
    quarantined_revision TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    fleet TEXT PRIMARY KEY, revision TEXT NOT NULL, version TEXT NOT NULL REFERENCES snapshots(version),
    kind TEXT NOT NULL, started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fleet TEXT NOT NULL, revision TEXT NOT NULL, kind TEXT NOT NULL,
    result TEXT NOT NULL, reason TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL NOT NULL,
    details TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS history_by_fleet ON history (fleet, id);
"""
# PRAGMA user_version of the schema above. 1: a snapshot's members are one column (its resources' digests, one
# per line), where version 0 had a row per resource in `snapshot_resources`: 12k rows and ~25 ms per snapshot at
# 10k VirtualServices, written before every rollout.
# 2: a resource joined from parts is stored as `parts` (its pieces' digests, one per line) with an empty body, each
# piece once in `pieces`; whole bodies ('' parts) stay valid. At 10k VirtualServices a one-VS change rewrote a whole
# ~12 MB route configuration (medians: begin_rollout 50 ms, finish_rollout 38 ms pruning the old one); it now writes
# one piece of a few KB (5 ms and 4 ms). Reading a snapshot back (a restart) costs more rows: 83 → 124 ms for 2 fleets.
_SCHEMA_VERSION = 2
# Rows read back per query (resources, pieces): well under SQLite's smallest limit on query parameters (999).
_READ_BATCH = 500
# The parts of the resources stored as pieces, through the partial index: neither a scan of every resource nor a read
# of one stored whole (by an earlier schema: megabytes of body come before `parts` in the row).
_STORED_AS_PIECES = "SELECT parts FROM resources INDEXED BY resources_in_pieces WHERE parts != ''"
# A resource stored already (by digest) keeps its row, unless stored whole by an earlier schema and now offered as
# pieces: it becomes pieces, so an upgraded store sheds its megabyte rows too.
_PUT_RESOURCE = (
    "INSERT INTO resources (digest, type_url, name, body, parts) VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) "
    "DO UPDATE SET body = excluded.body, parts = excluded.parts WHERE parts = '' AND excluded.parts != ''"
)
# The snapshots a restart or a rollout may need: each fleet's applied and last good one, each unfinished rollout's.
_KEPT_VERSIONS = (
    "SELECT applied_version FROM fleets UNION SELECT last_good_version FROM fleets UNION SELECT version FROM rollouts"
)


class StateError(RuntimeError):
    """The state folder holds a store this version cannot use; the message says what to do."""


@dataclass(frozen=True)
class FleetRecord:
    name: str
    applied_revision: str = ""
    applied_version: str = ""
    last_good_revision: str = ""
    last_good_version: str = ""
    quarantined_revision: str = ""


@dataclass(frozen=True)
class InFlight:
    """A rollout that had started and not finished when the daemon last stopped."""

    fleet: str
    revision: str
    version: str
    kind: str
    started_at: float


@dataclass(frozen=True)
class HistoryEntry:
    fleet: str
    revision: str
    kind: str  # rollout | rollback | rejected
    result: str  # Succeeded | Reverted | Rejected | Superseded | Interrupted
    reason: str
    started_at: float
    finished_at: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "kind": self.kind,
            "result": self.result,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            **self.details,
        }


class StateStore:
    FILENAME = "reconciler.db"

    def __init__(self, directory: Path) -> None:
        # The database holds every served resource, TLS private keys from the secrets folder included:
        # as private as that folder.
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / self.FILENAME
        self.path.touch(mode=0o600, exist_ok=True)
        self._lock = threading.Lock()
        # The resource digests of each fleet's snapshot stored last, less those pruned since: they need no INSERT
        # (a one-VS change at 10k VirtualServices stores 2 resources instead of offering 12k: 30 ms less).
        self._stored: dict[str, set[str]] = {}
        # Each fleet's parts (of the snapshot stored last) with their piece digests, by identity: the unchanged parts
        # of the next revision are the very same bytes, so only new ones are hashed (KBs, not the ~12 MB a route
        # configuration joins to at 10k VirtualServices). Holding each part keeps its id from being reused.
        self._part_digests: dict[str, dict[int, tuple[bytes, str]]] = {}
        # Piece digests known to be in `pieces` (like `_stored`): ~3k unchanged pieces get no INSERT (~10 ms).
        self._pieces: set[str] = set()
        # What the transaction under way tells the caches once it has committed (under the lock, so no other
        # transaction, a prune, comes in between).
        self._on_commit: list[Callable[[], None]] = []
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._transaction() as db:
            self._migrate(db)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Create the schema, or bring a store written by an earlier version to it (in the one transaction)."""
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > _SCHEMA_VERSION:
            raise StateError(
                f"The state store was written by a newer version of the reconciler (schema {found}, this one "
                f"knows {_SCHEMA_VERSION}); run that version, or move the state folder aside to start afresh."
            )
        old_membership = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'snapshot_resources'").fetchone()
        if old_membership:
            db.execute("ALTER TABLE snapshots ADD COLUMN members TEXT NOT NULL DEFAULT ''")
            db.execute(
                "UPDATE snapshots SET members = (SELECT coalesce(group_concat(digest, char(10)), '') "
                "FROM snapshot_resources s WHERE s.version = snapshots.version)"
            )
            db.execute("DROP TABLE snapshot_resources")
        resource_columns = {row[0] for row in db.execute("SELECT name FROM pragma_table_info('resources')")}
        if resource_columns and "parts" not in resource_columns:  # schema 1 or 0: every resource a whole body
            db.execute("ALTER TABLE resources ADD COLUMN parts TEXT NOT NULL DEFAULT ''")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                for update in self._on_commit:
                    update()
            finally:
                self._on_commit.clear()

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ snapshots

    def _put_snapshot(self, db: sqlite3.Connection, fleet: str, snapshot: Snapshot) -> None:
        """Store `fleet`'s `snapshot`: the resources and pieces not known to be stored already, and its members."""
        resources = list(snapshot.all_resources())
        digests = [r.digest for r in resources]
        part_digests = _digests_of_parts(resources, self._part_digests.get(fleet, {}))
        stored = self._stored.get(fleet, set())
        new_pieces: dict[str, bytes] = {}
        if not db.execute("SELECT 1 FROM snapshots WHERE version = ?", (snapshot.version,)).fetchone():
            rows = []
            for r in (r for r in resources if r.digest not in stored):
                pieces = [part_digests[id(part)][1] for part in r.parts]
                new_pieces.update((d, part) for d, part in zip(pieces, r.parts, strict=True) if d not in self._pieces)
                rows.append((r.digest, r.type_url, r.name, b"" if pieces else r.body, "\n".join(pieces)))
            db.executemany("INSERT OR IGNORE INTO pieces (digest, body) VALUES (?, ?)", new_pieces.items())
            db.executemany(_PUT_RESOURCE, rows)
            db.execute(
                "INSERT INTO snapshots (version, created_at, members) VALUES (?, ?, ?)",
                (snapshot.version, time.time(), "\n".join(digests)),
            )

        def committed() -> None:
            self._stored[fleet] = set(digests)
            self._part_digests[fleet] = part_digests
            self._pieces.update(new_pieces)

        self._on_commit.append(committed)

    def load_snapshot(self, version: str) -> Snapshot | None:
        with self._lock:
            row = self._db.execute("SELECT members FROM snapshots WHERE version = ?", (version,)).fetchone()
            if row is None:
                return None
            digests = _members(row[0])
            rows = _select_in(self._db, "SELECT type_url, name, body, digest, parts FROM resources WHERE", digests)
            wanted = list({piece for *_, parts in rows for piece in _members(parts)})
            pieces: dict[str, bytes] = dict(_select_in(self._db, "SELECT digest, body FROM pieces WHERE", wanted))
            self._pieces.update(pieces)  # read under the lock: in the table until a prune takes them out again
        if len(rows) != len(digests) or len(pieces) != len(wanted):
            raise RuntimeError(f"stored snapshot {version} misses resources or pieces; the state is corrupt")
        snapshot = Snapshot.of_resources(
            XdsResource.joined_on_read(t, n, d, tuple(pieces[p] for p in _members(parts)))
            if parts
            else XdsResource(t, n, bytes(b), d)
            for t, n, b, d, parts in rows
        )
        if snapshot.version != version:
            raise RuntimeError(f"stored snapshot {version} reads back as {snapshot.version}; the state is corrupt")
        return snapshot

    # ------------------------------------------------------------------ fleets and rollouts

    def _ensure_fleet(self, db: sqlite3.Connection, fleet: str) -> None:
        db.execute("INSERT OR IGNORE INTO fleets (name, updated_at) VALUES (?, ?)", (fleet, time.time()))

    def begin_rollout(self, fleet: str, revision: str, snapshot: Snapshot, kind: str, started_at: float) -> None:
        """The fleet is now being moved to `revision`: its snapshot is stored first, so a restart can resume."""
        with self._transaction() as db:
            self._put_snapshot(db, fleet, snapshot)
            self._ensure_fleet(db, fleet)
            db.execute(
                "INSERT OR REPLACE INTO rollouts (fleet, revision, version, kind, started_at) VALUES (?, ?, ?, ?, ?)",
                (fleet, revision, snapshot.version, kind, started_at),
            )
            db.execute(
                "UPDATE fleets SET applied_revision = ?, applied_version = ?, updated_at = ? WHERE name = ?",
                (revision, snapshot.version, time.time(), fleet),
            )

    def finish_rollout(
        self, fleet: str, revision: str, kind: str, result: str, reason: str, started_at: float,
        details: dict[str, Any],
    ) -> None:  # fmt: skip
        """Record the outcome: a success becomes the last good; a revert quarantines the revision."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT version FROM rollouts WHERE fleet = ? AND revision = ?", (fleet, revision)
            ).fetchone()
            db.execute("DELETE FROM rollouts WHERE fleet = ? AND revision = ?", (fleet, revision))
            if result == "Succeeded" and row is not None:
                db.execute(
                    "UPDATE fleets SET last_good_revision = ?, last_good_version = ?, quarantined_revision = '', "
                    "updated_at = ? WHERE name = ?",
                    (revision, row[0], now, fleet),
                )
            elif result in ("Reverted", "Superseded"):
                db.execute(
                    "UPDATE fleets SET applied_revision = last_good_revision, applied_version = last_good_version, "
                    "updated_at = ? WHERE name = ?",
                    (now, fleet),
                )
                if result == "Reverted":
                    db.execute("UPDATE fleets SET quarantined_revision = ? WHERE name = ?", (revision, fleet))
            self._add_history(db, fleet, revision, kind, result, reason, started_at, now, details)
            self._prune(db)

    def _prune(self, db: sqlite3.Connection) -> None:
        """Drop the snapshots nothing needs any more (not a fleet's applied or last good one, not an unfinished
        rollout's) and the resources and pieces only they held. Without it every revision kept each of its resources
        forever (12k per fleet and revision at 10k VirtualServices)."""
        dropped = db.execute(f"SELECT members FROM snapshots WHERE version NOT IN ({_KEPT_VERSIONS})").fetchall()
        if not dropped:
            return
        db.execute(f"DELETE FROM snapshots WHERE version NOT IN ({_KEPT_VERSIONS})")
        candidates = {digest for (members,) in dropped for digest in _members(members)}
        for (members,) in db.execute("SELECT members FROM snapshots"):
            candidates.difference_update(_members(members))
        held = _select_in(db, f"{_STORED_AS_PIECES} AND", list(candidates))
        pieces = {piece for (parts,) in held for piece in _members(parts)}
        db.executemany("DELETE FROM resources WHERE digest = ?", [(digest,) for digest in candidates])
        if pieces:
            for (parts,) in db.execute(_STORED_AS_PIECES):
                pieces.difference_update(_members(parts))
            db.executemany("DELETE FROM pieces WHERE digest = ?", [(piece,) for piece in pieces])
        # Before the commit: a rollback only makes them offered again.
        for stored in self._stored.values():
            stored.difference_update(candidates)
        self._pieces.difference_update(pieces)

    def interrupted_rollouts(self) -> list[InFlight]:
        with self._lock:
            rows = self._db.execute("SELECT fleet, revision, version, kind, started_at FROM rollouts").fetchall()
        return [InFlight(*row) for row in rows]

    def mark_unchanged(self, fleet: str, revision: str) -> None:
        """A revision that leaves this fleet's config as it is: it is applied (and good) without a rollout."""
        with self._transaction() as db:
            db.execute(
                "UPDATE fleets SET applied_revision = ?, last_good_revision = CASE WHEN applied_version = "
                "last_good_version THEN ? ELSE last_good_revision END, updated_at = ? WHERE name = ?",
                (revision, revision, time.time(), fleet),
            )

    def record_rejected(
        self, fleet: str, revision: str, reason: str, started_at: float, details: dict[str, Any]
    ) -> None:
        with self._transaction() as db:
            self._ensure_fleet(db, fleet)
            db.execute("UPDATE fleets SET quarantined_revision = ? WHERE name = ?", (revision, fleet))
            self._add_history(db, fleet, revision, "rejected", "Rejected", reason, started_at, time.time(), details)

    def _add_history(
        self, db: sqlite3.Connection, fleet: str, revision: str, kind: str, result: str, reason: str,
        started: float, finished: float, details: dict[str, Any],
    ) -> None:  # fmt: skip
        db.execute(
            "INSERT INTO history (fleet, revision, kind, result, reason, started_at, finished_at, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (fleet, revision, kind, result, reason, started, finished, json.dumps(details, sort_keys=True)),
        )

    def forget_fleet(self, fleet: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM rollouts WHERE fleet = ?", (fleet,))
            db.execute("DELETE FROM fleets WHERE name = ?", (fleet,))
            self._prune(db)
            self._on_commit.append(lambda: self._forget_cached(fleet))

    def _forget_cached(self, fleet: str) -> None:
        self._stored.pop(fleet, None)
        self._part_digests.pop(fleet, None)

    def fleets(self) -> list[FleetRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, applied_revision, applied_version, last_good_revision, last_good_version, "
                "quarantined_revision FROM fleets ORDER BY name"
            ).fetchall()
        return [FleetRecord(*row) for row in rows]

    def history(self, fleet: str, limit: int = 20) -> list[HistoryEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT fleet, revision, kind, result, reason, started_at, finished_at, details FROM history "
                "WHERE fleet = ? ORDER BY id DESC LIMIT ?",
                (fleet, limit),
            ).fetchall()
        return [
            HistoryEntry(fleet, revision, kind, result, reason, started, finished, json.loads(details))
            for fleet, revision, kind, result, reason, started, finished, details in rows
        ]


def _members(column: str) -> list[str]:
    """The digests a `members` (resources of a snapshot) or `parts` (pieces of a resource) column holds."""
    return column.split("\n") if column else []


def _select_in(db: sqlite3.Connection, select: str, digests: Sequence[str]) -> list[Any]:
    """The rows of `select` (a query over a table keyed by `digest`, ending in WHERE or AND) whose digest is one of
    `digests`."""
    rows = []
    for start in range(0, len(digests), _READ_BATCH):
        batch = digests[start : start + _READ_BATCH]
        rows += db.execute(f"{select} digest IN ({','.join('?' * len(batch))})", batch).fetchall()
    return rows


def _digests_of_parts(
    resources: Sequence[XdsResource], known: Mapping[int, tuple[bytes, str]]
) -> dict[int, tuple[bytes, str]]:
    """Each part of `resources`, by identity, with its piece digest: from `known` (same keys) when there, else
    hashed. The lookups run at C speed over thousands of parts; only the few new parts meet Python code."""
    out: dict[int, tuple[bytes, str]] = {}
    for parts in (r.parts for r in resources if r.parts):
        keys = list(map(id, parts))
        found = list(map(known.get, keys))
        for i in compress(range(len(parts)), map(operator.is_, found, repeat(None))):
            found[i] = (parts[i], content_digest(parts[i]))
        out.update(zip(keys, cast(list[tuple[bytes, str]], found), strict=True))  # no None left
    return out
