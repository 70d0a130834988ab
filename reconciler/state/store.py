"""Durable state in SQLite: what each fleet runs, the snapshots needed to serve it, and history.

Resources are stored once by content digest, so successive revisions share unchanged resources. Every
write is one transaction (WAL, synchronous=FULL): a daemon killed at any point restarts on a state that
was fully written before, never on half of one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.translate.snapshot import Snapshot, XdsResource

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    digest TEXT PRIMARY KEY, type_url TEXT NOT NULL, name TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (version TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot_resources (
    version TEXT NOT NULL REFERENCES snapshots(version), digest TEXT NOT NULL REFERENCES resources(digest),
    PRIMARY KEY (version, digest));
CREATE TABLE IF NOT EXISTS fleets (
    name TEXT PRIMARY KEY, applied_revision TEXT NOT NULL, applied_version TEXT NOT NULL,
    last_good_revision TEXT NOT NULL, last_good_version TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fleet TEXT NOT NULL, revision TEXT NOT NULL, result TEXT NOT NULL,
    reason TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS history_by_fleet ON history (fleet, id);
"""


@dataclass(frozen=True)
class FleetRecord:
    name: str
    applied_revision: str
    applied_version: str
    last_good_revision: str
    last_good_version: str


@dataclass(frozen=True)
class HistoryEntry:
    fleet: str
    revision: str
    result: str  # Succeeded | Reverted | Rejected
    reason: str
    started_at: float
    finished_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "result": self.result,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class StateStore:
    FILENAME = "reconciler.db"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / self.FILENAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ snapshots

    def _put_snapshot(self, snapshot: Snapshot) -> None:
        exists = self._db.execute("SELECT 1 FROM snapshots WHERE version = ?", (snapshot.version,)).fetchone()
        if exists:
            return
        self._db.executemany(
            "INSERT OR IGNORE INTO resources (digest, type_url, name, body) VALUES (?, ?, ?, ?)",
            [(r.digest, r.type_url, r.name, r.body) for r in snapshot.all_resources()],
        )
        self._db.execute("INSERT INTO snapshots (version, created_at) VALUES (?, ?)", (snapshot.version, time.time()))
        self._db.executemany(
            "INSERT INTO snapshot_resources (version, digest) VALUES (?, ?)",
            [(snapshot.version, r.digest) for r in snapshot.all_resources()],
        )

    def load_snapshot(self, version: str) -> Snapshot | None:
        with self._lock:
            known = self._db.execute("SELECT 1 FROM snapshots WHERE version = ?", (version,)).fetchone()
            rows = self._db.execute(
                "SELECT r.type_url, r.name, r.body, r.digest FROM snapshot_resources s "
                "JOIN resources r ON r.digest = s.digest WHERE s.version = ?",
                (version,),
            ).fetchall()
        if not known:
            return None
        snapshot = Snapshot.of_resources(XdsResource(t, n, bytes(b), d) for t, n, b, d in rows)
        if snapshot.version != version:
            raise RuntimeError(f"stored snapshot {version} reads back as {snapshot.version}; the state is corrupt")
        return snapshot

    # ------------------------------------------------------------------ fleets

    def record_applied(
        self, fleet: str, revision: str, snapshot: Snapshot, started_at: float, changed: bool = True
    ) -> None:
        """The fleet now runs `revision`; it becomes the last good one too (verification lands with rollouts).

        A revision that leaves the fleet's snapshot unchanged moves the applied revision but adds no history.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._put_snapshot(snapshot)
                self._db.execute(
                    "INSERT OR REPLACE INTO fleets (name, applied_revision, applied_version, last_good_revision, "
                    "last_good_version, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (fleet, revision, snapshot.version, revision, snapshot.version, now),
                )
                if changed:
                    self._add_history(fleet, revision, "Succeeded", "", started_at, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def record_rejected(self, fleet: str, revision: str, reason: str, started_at: float) -> None:
        with self._lock:
            self._add_history(fleet, revision, "Rejected", reason, started_at, time.time())

    def _add_history(
        self, fleet: str, revision: str, result: str, reason: str, started: float, finished: float
    ) -> None:
        self._db.execute(
            "INSERT INTO history (fleet, revision, result, reason, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?)",
            (fleet, revision, result, reason, started, finished),
        )

    def forget_fleet(self, fleet: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM fleets WHERE name = ?", (fleet,))

    def fleets(self) -> list[FleetRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, applied_revision, applied_version, last_good_revision, last_good_version "
                "FROM fleets ORDER BY name"
            ).fetchall()
        return [FleetRecord(*row) for row in rows]

    def history(self, fleet: str, limit: int = 20) -> list[HistoryEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT fleet, revision, result, reason, started_at, finished_at FROM history "
                "WHERE fleet = ? ORDER BY id DESC LIMIT ?",
                (fleet, limit),
            ).fetchall()
        return [HistoryEntry(*row) for row in rows]
