"""The daemon: poll git, build, publish to the ADS server, record state; serve the API.

The ADS server and the HTTP API live on one asyncio loop. Git, the build and SQLite writes run in
APScheduler's thread pool, and hand results to the loop with `run_coroutine_threadsafe`, so the loop
never waits on I/O or CPU-heavy work.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from reconciler.api.http import ApiServer
from reconciler.daemon.config import DaemonConfig
from reconciler.diagnostics import Finding
from reconciler.pipeline import build
from reconciler.source import GitSource, SourceError
from reconciler.state import StateStore
from reconciler.translate import TranslateOptions
from reconciler.translate.snapshot import Snapshot
from reconciler.xds import AdsServer, NodeState, NodeStream, start_grpc_server

log = structlog.get_logger("reconciler.daemon")

POLL_JOB = "poll"
LAST_SEEN_HEAD = "last_seen_head"
MAX_REPORTED_FINDINGS = 20


@dataclass
class FleetStatus:
    name: str
    applied_revision: str = ""
    applied_version: str = ""
    last_good_revision: str = ""
    rejected_revision: str = ""
    last_error: str = ""


@dataclass
class DaemonStatus:
    head: str = ""
    last_poll_at: float = 0.0
    last_error: str = ""
    findings: list[Finding] = field(default_factory=list)
    fleets: dict[str, FleetStatus] = field(default_factory=dict)


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.store = StateStore(config.state_dir)
        self.source = GitSource(config.repo.url, config.repo.branch, config.repo.path, config.state_dir / "repo")
        self.ads = AdsServer()
        self.status = DaemonStatus()
        self.options = TranslateOptions(default_bind=config.envoy.bind_address)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._stop = asyncio.Event()
        self._build_lock = threading.Lock()
        self.ready = False
        self.ports: dict[str, int] = {}
        self._revisions: dict[str, str] = {}  # snapshot version → the revision it was applied for

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._restore()
        grpc_server, self.ports["xds"] = await start_grpc_server(self.ads, self.config.xds.listen)
        api = ApiServer(self)
        self.ports["api"] = await api.start(self.config.api.listen)
        log.info(
            "daemon.started",
            xds=self.config.xds.listen,
            api=self.config.api.listen,
            repo=self.source.display_url,
            branch=self.config.repo.branch,
        )
        self._scheduler = AsyncIOScheduler(event_loop=self._loop, executors={"default": ThreadPoolExecutor(4)})
        self._scheduler.add_job(
            self.reconcile,
            "interval",
            id=POLL_JOB,
            seconds=self.config.repo.poll_interval.seconds,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._stop.wait()
        finally:
            log.info("daemon.stopping")
            self._scheduler.shutdown(wait=False)
            await api.stop()
            await grpc_server.stop(grace=1.0)
            await asyncio.to_thread(self._close_store)
            log.info("daemon.stopped")

    def stop(self) -> None:
        self._stop.set()

    def _close_store(self) -> None:
        with self._build_lock:  # a reconcile in flight finishes its transaction first
            self.store.close()

    def _restore(self) -> None:
        """Serve the last applied snapshots at once, before any fetch: the remote may be down."""
        records = self.store.fleets()
        for record in records:
            snapshot = self.store.load_snapshot(record.applied_version)
            if snapshot is None:
                continue
            self.ads.set_fleet_snapshot(record.name, snapshot)
            self._revisions[record.applied_version] = record.applied_revision
            self.status.fleets[record.name] = FleetStatus(
                record.name, record.applied_revision, record.applied_version, record.last_good_revision
            )
            log.info(
                "daemon.restored",
                fleet=record.name,
                revision=record.applied_revision,
                version=record.applied_version,
            )
        if records:
            self.ads.set_known_fleets(r.name for r in records)
            self.ready = True
        self.status.head = self.store.get_meta(LAST_SEEN_HEAD) or ""

    def request_reconcile(self) -> None:
        """Poll now (webhook or API); the interval schedule continues as the safety net."""
        if self._scheduler is not None:
            self._scheduler.modify_job(POLL_JOB, next_run_time=datetime.now(UTC))

    # ------------------------------------------------------------------ reconcile (worker thread)

    def reconcile(self) -> None:
        with self._build_lock:
            self.status.last_poll_at = time.time()
            try:
                self._reconcile()
                self.status.last_error = ""
            except SourceError as exc:
                self.status.last_error = str(exc)
                log.warning("source.unreachable", error=str(exc))
            finally:
                if not self.ready:
                    self.ready = True
                    self._call_on_loop(self._mark_known, list(self.status.fleets))

    def _reconcile(self) -> None:
        head = self.source.remote_head()
        if head == self.status.head:
            return
        started = time.time()
        sha = self.source.fetch()
        files = self.source.read_manifests(sha)
        result = build(files, self.options)
        bound = log.bind(revision=sha[:12])
        self.status.findings = list(result.findings)
        if not result.ok:
            errors = [f for f in result.findings if f.is_error]
            for finding in errors[:MAX_REPORTED_FINDINGS]:
                bound.error(
                    "revision.invalid",
                    finding=str(finding),
                    file=finding.location.file,
                    line=finding.location.line,
                    code=finding.code,
                )
            reason = f"{len(errors)} error(s); first: {errors[0]}"
            for fleet in self.status.fleets.values():
                fleet.rejected_revision, fleet.last_error = sha, reason
                self.store.record_rejected(fleet.name, sha, reason, started)
            bound.error("revision.rejected", errors=len(errors), phase="Rejected")
        else:
            self._apply(sha, result.snapshots, started)
        self.status.head = sha
        self.store.set_meta(LAST_SEEN_HEAD, sha)

    def _apply(self, sha: str, snapshots: dict[str, Snapshot] | Any, started: float) -> None:
        for name, snapshot in sorted(snapshots.items()):
            fleet = self.status.fleets.setdefault(name, FleetStatus(name))
            changed = snapshot.version != fleet.applied_version
            if changed:
                self._call_on_loop(self.ads.set_fleet_snapshot, name, snapshot)
            self.store.record_applied(name, sha, snapshot, started, changed=changed)
            self._revisions[snapshot.version] = sha
            fleet.applied_revision = fleet.last_good_revision = sha
            fleet.applied_version = snapshot.version
            fleet.rejected_revision = fleet.last_error = ""
            log.info(
                "revision.applied",
                fleet=name,
                revision=sha[:12],
                version=snapshot.version,
                changed=changed,
                resources=snapshot.count(),
                phase="Applied",
            )
        for name in sorted(set(self.status.fleets) - set(snapshots)):
            log.info("fleet.removed", fleet=name, revision=sha[:12])
            self.store.forget_fleet(name)
            del self.status.fleets[name]
        self._call_on_loop(self._mark_known, list(snapshots))

    def _mark_known(self, fleets: list[str]) -> None:
        self.ads.set_known_fleets(fleets)

    def _call_on_loop(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop).result(timeout=30)

    # ------------------------------------------------------------------ status (event loop)

    async def status_json(self) -> dict[str, Any]:
        names = sorted(self.status.fleets)
        histories = await asyncio.to_thread(lambda: {n: self.store.history(n) for n in names})
        fleets = []
        for name in sorted(self.status.fleets):
            fleet = self.status.fleets[name]
            nodes = self.ads.nodes(name)
            states = [n.state() for n in nodes]
            if any(s is NodeState.NACKED for s in states):
                phase = "Degraded"
            elif fleet.rejected_revision:
                phase = "Failed"
            elif any(s is NodeState.STALE for s in states):
                phase = "Progressing"
            else:
                phase = "Synced"
            fleets.append(
                {
                    "name": name,
                    "phase": phase,
                    "applied_revision": fleet.applied_revision,
                    "applied_version": fleet.applied_version,
                    "last_good_revision": fleet.last_good_revision,
                    "rejected_revision": fleet.rejected_revision,
                    "last_error": fleet.last_error,
                    "nodes": [self._node_json(n) for n in nodes],
                    "history": [h.to_json() for h in histories.get(name, [])],
                }
            )
        return {
            "head": self.status.head,
            "last_poll_at": self.status.last_poll_at,
            "last_error": self.status.last_error,
            "findings": [f.to_json() for f in self.status.findings[:MAX_REPORTED_FINDINGS]],
            "fleets": fleets,
        }

    def _node_json(self, node: NodeStream) -> dict[str, Any]:
        view = node.view()
        view["revision"] = self._revisions.get(node.synced_version, "")
        return view


async def _call(fn: Any, *args: Any) -> None:
    fn(*args)
