"""The daemon: poll git, build, roll each changed fleet out wave by wave, record everything; serve the API.

The ADS server, the rollouts and the HTTP API live on one asyncio loop. Git, the build and SQLite writes
run in APScheduler's thread pool and hand results to the loop with `run_coroutine_threadsafe`, so the loop
never waits on I/O or CPU-heavy work.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from reconciler.api.auth import Scope, TokenFile, TokenSet, load_tokens
from reconciler.api.http import ApiServer
from reconciler.api.metrics import Metrics
from reconciler.api.webhooks import PushEvent, WebhookLimits, WebhookVerifier
from reconciler.daemon.config import DaemonConfig
from reconciler.diagnostics import Finding, sort_findings
from reconciler.envoy_binary import envoy_binary
from reconciler.heap import retire_from_collection
from reconciler.pipeline import Build, build
from reconciler.pipeline_cache import BuildCache
from reconciler.rollout.controller import revert_snapshot
from reconciler.rollout.manager import RolloutManager
from reconciler.rollout.model import Result
from reconciler.source import GitSource, SourceError
from reconciler.source.credentials import LoadedCredentials, fingerprint, load_credentials
from reconciler.source.git import GitCredentials
from reconciler.source.signatures import SignatureError, TrustedKeys, unverified_commits
from reconciler.state import FleetRecord, StateStore
from reconciler.translate import TranslateOptions
from reconciler.translate.snapshot import Snapshot
from reconciler.validation import SecretScanner
from reconciler.validation.preflight import Preflight, PreflightOptions
from reconciler.xds import AdsServer, NodeState, NodeStream, XdsEvent, start_grpc_server
from reconciler.xds.security import NodeAuthorizer, authorizing_handler, server_credentials

log = structlog.get_logger("reconciler.daemon")

POLL_JOB = "poll"
LAST_SEEN_HEAD = "last_seen_head"
LAST_VERIFIED_HEAD = "last_verified_head"  # the newest revision whose commits all passed signature checks
MAX_REPORTED_FINDINGS = 20


@dataclass
class FleetState:
    """What the daemon knows of one fleet; mirrors the store's record plus the live rejection."""

    name: str
    applied_revision: str = ""
    applied_version: str = ""
    last_good_revision: str = ""
    last_good: Snapshot = field(default_factory=Snapshot.empty)
    quarantined_revision: str = ""
    rejected_revision: str = ""
    last_error: str = ""


@dataclass
class DaemonStatus:
    head: str = ""
    head_seen_at: float = 0.0
    last_poll_at: float = 0.0
    last_error: str = ""
    findings: list[Finding] = field(default_factory=list)
    last_webhook_at: float = 0.0
    last_webhook_sha: str = ""


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.store = StateStore(config.state_dir)
        repo = config.repo
        credentials = GitCredentials(repo.ssh_key_file, repo.known_hosts_file, repo.token_file, repo.token_username)
        self.source = GitSource(repo.url, repo.branch, repo.path, config.state_dir / "repo", credentials=credentials)
        self.ads = AdsServer()
        self.metrics = Metrics(self.ads)
        self.rollouts = RolloutManager(self.ads, self.store, self.metrics)
        self.ads.subscribe(self._on_xds_event)
        self.status = DaemonStatus()
        self.fleets: dict[str, FleetState] = {}
        self.options = TranslateOptions(default_bind=config.envoy.bind_address)
        self._credentials = LoadedCredentials({}, "")
        self.tokens: TokenSet | None = self._tokens(config)
        self.webhook: WebhookVerifier | None = self._webhook(config)
        self.trust = self._trust(config)
        self.preflight = self._preflight(config)
        self.ready = False
        self.ports: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._stop = asyncio.Event()
        self._build_lock = threading.Lock()
        self._build_cache = BuildCache()  # parse/resolve/translate only what each revision changed; under the lock
        self._secret_scan = SecretScanner()  # likewise, under the lock
        self._revisions: dict[str, str] = {}  # snapshot version → the revision it was built from
        self._resume = False  # a rollout was interrupted: rebuild the head even if it was seen
        self._pushed = threading.Event()  # a webhook or the API said the branch moved: fetch without asking

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._restore)
        grpc_server, self.ports["xds"] = await start_grpc_server(
            self.ads, self.config.xds.listen, *self._xds_security()
        )
        api = ApiServer(self)
        self.ports["api"] = await api.start(self.config.api.listen)
        log.info("daemon.started", xds=self.config.xds.listen, api=self.config.api.listen,
                 repo=self.source.display_url, branch=self.config.repo.branch)  # fmt: skip
        self._scheduler = AsyncIOScheduler(event_loop=self._loop, executors={"default": ThreadPoolExecutor(4)})
        self._scheduler.add_job(
            self.reconcile, "interval", id=POLL_JOB, seconds=self.config.repo.poll_interval.seconds,
            next_run_time=datetime.now(UTC), max_instances=1, coalesce=True, misfire_grace_time=None,
        )  # fmt: skip
        self._scheduler.start()
        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._stop.wait()
        finally:
            log.info("daemon.stopping")
            self._scheduler.shutdown(wait=False)
            # A rollout cut short by a stop is resumed from its first wave on the next start (its row in
            # the store says so); cancelling it here hands its nodes back to the last good snapshot.
            for task, _ in list(self.rollouts.active.values()):
                task.cancel()
            await api.stop()
            await grpc_server.stop(grace=1.0)
            await asyncio.to_thread(self._close_store)
            if self.preflight is not None:
                self.preflight.close()
            log.info("daemon.stopped")

    def stop(self) -> None:
        """Ask a running daemon to stop; safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _close_store(self) -> None:
        """The store and the source, once a reconcile in flight finished its transaction."""
        with self._build_lock:
            self.store.close()
            self.source.close()

    def _restore(self) -> None:
        """Serve every fleet's last good snapshot at once, before any fetch: the remote may be down."""
        for record in self.store.fleets():
            fleet = self._fleet_from_record(record)
            self.fleets[record.name] = fleet
            self.ads.set_fleet_snapshot(record.name, fleet.last_good)
            if self.preflight is not None and fleet.last_good.count():
                self.preflight.accepted_before(record.name, fleet.last_good)
            log.info("daemon.restored", fleet=record.name, revision=record.last_good_revision[:12],
                     version=fleet.last_good.version)  # fmt: skip
        for inflight in self.store.interrupted_rollouts():
            reason = "the daemon stopped mid-rollout; it restarts from the first wave"
            self.store.finish_rollout(inflight.fleet, inflight.revision, inflight.kind, Result.INTERRUPTED.value,
                                      reason, inflight.started_at, {})  # fmt: skip
            self._resume = True
            log.warning("rollout.interrupted", fleet=inflight.fleet, revision=inflight.revision[:12])
            if inflight.fleet in self.fleets:
                record = next(r for r in self.store.fleets() if r.name == inflight.fleet)
                self.fleets[inflight.fleet] = self._fleet_from_record(record)
        if self.fleets:
            self.ads.set_known_fleets(self.fleets)
            self.ready = True
        self.status.head = self.store.get_meta(LAST_SEEN_HEAD) or ""

    # ------------------------------------------------------------------ security set-up (fatal when wrong)

    @staticmethod
    def _tokens(config: DaemonConfig) -> TokenSet | None:
        if config.api.auth is None:
            return None
        return load_tokens(TokenFile(Path(t.file), Scope(t.scope), t.name) for t in config.api.auth.tokens)

    @staticmethod
    def _webhook(config: DaemonConfig) -> WebhookVerifier | None:
        hook = config.webhook
        if hook is None:
            return None
        limits = WebhookLimits(max_body=hook.max_body, rate_per_second=hook.rate_per_second, burst=hook.burst)
        return WebhookVerifier.from_file(hook.secret_file, config.repo.branch, limits)

    @staticmethod
    def _trust(config: DaemonConfig) -> TrustedKeys | None:
        keys = config.repo.verify_signatures
        if keys is None:
            return None
        signers = Path(keys.ssh_allowed_signers) if keys.ssh_allowed_signers else None
        return TrustedKeys(tuple(Path(k) for k in keys.gpg_keys), signers)

    @staticmethod
    def _preflight(config: DaemonConfig) -> Preflight | None:
        settings = config.preflight
        if not settings.enabled:
            return None
        envoy = settings.envoy or envoy_binary()  # FileNotFoundError with a sentence when there is none
        return Preflight(PreflightOptions(envoy=envoy, files_are_local=settings.files_are_local, live=settings.live))

    def _xds_security(self) -> tuple[Any, Any]:
        tls = self.config.xds.tls
        if tls is None:
            return None, None
        credentials = server_credentials(tls.cert_file, tls.key_file, tls.client_ca_file or None)
        rules: dict[str, set[str]] = {}
        for rule in self.config.xds.authorization:
            rules.setdefault(rule.identity, set()).update(rule.fleets)
        if not rules:
            return credentials, None
        authorizer = NodeAuthorizer(rules)
        return credentials, lambda handler: authorizing_handler(handler, authorizer)

    def on_webhook(self, push: PushEvent) -> None:
        """A verified push to our branch: note it (for webhook lag) and poll now."""
        self.status.last_webhook_at, self.status.last_webhook_sha = time.time(), push.sha
        self.request_reconcile()

    def _fleet_from_record(self, record: FleetRecord) -> FleetState:
        last_good = self.store.load_snapshot(record.last_good_version) if record.last_good_version else None
        state = FleetState(
            record.name, record.applied_revision, record.applied_version, record.last_good_revision,
            last_good or Snapshot.empty(), record.quarantined_revision,
        )  # fmt: skip
        self._revisions[state.last_good.version] = record.last_good_revision
        return state

    def request_reconcile(self) -> None:
        """Poll now (webhook or API); the interval schedule continues as the safety net."""
        self._pushed.set()
        if self._scheduler is not None:
            self._scheduler.modify_job(POLL_JOB, next_run_time=datetime.now(UTC))

    # ------------------------------------------------------------------ reconcile (worker thread)

    def reconcile(self) -> None:
        with self._build_lock:
            self.status.last_poll_at = time.time()
            pushed = self._pushed.is_set()
            self._pushed.clear()
            try:
                self._reconcile(pushed)
                self.status.last_error = ""
                self._tidy_source()
            except SourceError as exc:
                self.status.last_error = str(exc)
                log.warning("source.unreachable", error=str(exc))
            except Exception as exc:  # a bug: say so in the status and the log, keep serving last good
                self.status.last_error = f"internal error while reconciling: {exc!r}"
                log.exception("reconcile.failed")
            finally:
                if not self.ready:
                    self.ready = True
                    self._on_loop(self._known_fleets())

    def _tidy_source(self) -> None:
        """Git's housekeeping of the mirror, after the rollouts started: a failure there delays nothing."""
        try:
            self.source.tidy()
        except SourceError as exc:
            log.warning("source.housekeeping_failed", error=str(exc))

    def _reconcile(self, pushed: bool = False) -> None:
        offline = head_fetched = False
        started = time.time()
        try:
            # A scheduled poll asks the remote first (ls-remote), so an idle repository is never fetched from.
            # After a push there is news: one fetch at once saves that round trip (~5 ms, more over a network).
            head = self.source.fetch() if pushed else self.source.remote_head()
            head_fetched = pushed
        except SourceError:
            local = self.source.local_head() if self._resume else None
            if local is None:
                raise
            head, offline = local, True  # resume an interrupted rollout from the mirror; the remote is down
        credentials_changed = self._refresh_credentials()
        if head == self.status.head and not self._resume and not credentials_changed:
            return
        if head != self.status.head:
            self.status.head_seen_at = time.time()
        self._resume = False
        sha = head if offline or head_fetched else self.source.fetch()
        if self._signatures_refused(sha, started):
            return
        commit = self.source.commit(sha)
        self.metrics.detection_lag.observe(max(0.0, started - commit.committed_at))
        fetched = time.time()
        files = self.source.read_files(sha)
        read = time.time()
        result = build(files, self.options, cache=self._build_cache)
        built = time.time()
        blocked = self._gate(result, files)
        gated = time.time()
        self.metrics.build.observe(gated - started)
        log.info("revision.built", revision=sha[:12], files=len(files), fetch_s=round(fetched - started, 4),
                 read_s=round(read - fetched, 4), build_s=round(built - read, 4), gate_s=round(gated - built, 4),
                 phase="Built")  # fmt: skip
        self.status.findings = sort_findings({*result.findings, *(f for errors in blocked.values() for f in errors)})
        self._report_errors(sha, self.status.findings)
        for name in sorted(result.config.fleets):
            if name in blocked:
                self._reject(name, sha, blocked[name], started)
            else:
                self._on_loop(self._apply(name, sha, result))
        for name in sorted(set(self.fleets) - set(result.config.fleets)):
            self._on_loop(self._forget(name, sha))
        self._on_loop(self._known_fleets())
        self.status.head = sha
        self.store.set_meta(LAST_SEEN_HEAD, sha)
        retire_from_collection()  # after the rollouts started: off the path from commit to Envoy

    def _refresh_credentials(self) -> bool:
        """Re-read the secrets folder when its files changed (a cheap stat); True when they did."""
        if self.config.secrets is None:
            return False
        folder = Path(self.config.secrets.dir)
        if fingerprint(folder) == self._credentials.fingerprint:
            return False
        loaded = load_credentials(folder)
        # A credential caught half-rotated (or broken) keeps its previous material until it reads whole.
        kept = {n: c for n, c in self._credentials.credentials.items() if n in loaded.problems}
        for name, problem in loaded.problems.items():
            log.warning("credentials.unusable", credential=name, problem=problem, kept_previous=name in kept)
        self._credentials = LoadedCredentials({**loaded.credentials, **kept}, loaded.fingerprint, loaded.problems)
        self.options = replace(self.options, credentials=self._credentials.credentials)
        log.info("credentials.loaded", count=len(self._credentials.credentials))
        return True

    def _signatures_refused(self, sha: str, started: float) -> bool:
        """With signature checks on, a revision with any commit not signed by a trusted key is rejected."""
        if self.trust is None:
            return False
        # From the last revision that passed, not the last one seen: a trusted commit on top of a refused one
        # still carries the refused one's content.
        previous = self.store.get_meta(LAST_VERIFIED_HEAD) or None
        try:
            bad = unverified_commits(self.source.cache_dir, previous, sha, self.trust)
            reason = "; ".join(str(c) for c in bad[:5])
        except SignatureError as exc:
            bad, reason = [], f"signatures could not be checked: {exc}"
        if not bad and not reason:
            self.store.set_meta(LAST_VERIFIED_HEAD, sha)
            return False
        reason = f"revision {sha[:12]} is not applied: {reason}"
        for name in sorted(self.fleets):
            self.store.record_rejected(name, sha, reason, started, {})
            self._on_loop(self._mark_rejected(name, sha, reason))
        log.error("revision.unsigned", revision=sha[:12], reason=reason, phase="Rejected")
        self.status.head = sha
        self.store.set_meta(LAST_SEEN_HEAD, sha)
        return True

    def _gate(self, result: Build, files: dict[str, bytes]) -> dict[str, tuple[Finding, ...]]:
        """Which fleets this revision must not reach: validation errors, private keys committed anywhere in
        the tree (every fleet), and snapshots the real Envoy rejects in preflight (that fleet)."""
        blocked = {name: list(errors) for name, errors in result.blocked.items()}
        leaked = self._secret_scan.scan(files)
        for name in result.config.fleets if leaked else ():
            blocked.setdefault(name, []).extend(leaked)
        if self.preflight is not None:
            checked = {n: s for n, s in result.snapshots.items() if n not in blocked}
            if checked:
                for finding in self.preflight.check(replace(result, snapshots=checked)):
                    if finding.is_error:
                        for name in checked:  # attributed to its resource; gate each fleet Envoy refused
                            if self.preflight.failures(name, checked[name]):
                                blocked.setdefault(name, []).append(finding)
        return {name: tuple(errors) for name, errors in blocked.items()}

    def _report_errors(self, sha: str, findings: list[Finding]) -> None:
        errors = [f for f in findings if f.is_error]
        for finding in errors[:MAX_REPORTED_FINDINGS]:
            log.error("revision.invalid", revision=sha[:12], finding=str(finding), file=finding.location.file,
                      line=finding.location.line, code=finding.code)  # fmt: skip

    def _reject(self, name: str, sha: str, errors: tuple[Finding, ...], started: float) -> None:
        reason = f"{len(errors)} error(s) block this fleet; first: {errors[0]}"
        self.store.record_rejected(name, sha, reason, started, {"findings": [f.to_json() for f in errors[:20]]})
        self._on_loop(self._mark_rejected(name, sha, reason))
        log.error("revision.rejected", fleet=name, revision=sha[:12], errors=len(errors), phase="Rejected")

    async def _mark_rejected(self, name: str, sha: str, reason: str) -> None:
        fleet = self.fleets.setdefault(name, FleetState(name))
        fleet.rejected_revision, fleet.last_error, fleet.quarantined_revision = sha, reason, sha

    def _on_loop(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    # ------------------------------------------------------------------ decisions (event loop)

    async def _apply(self, name: str, sha: str, result: Build) -> None:
        """Decide what a valid revision means for one fleet: nothing, a rollout, or a rollback."""
        target = result.snapshots[name]
        policy = result.config.fleets[name].spec.rollout
        fleet = self.fleets.get(name)
        if fleet is None:  # a new fleet: its nodes get an empty config until the first rollout lands
            fleet = self.fleets[name] = FleetState(name)
            self.ads.set_fleet_snapshot(name, fleet.last_good)
        fleet.rejected_revision = fleet.last_error = ""
        self._revisions.setdefault(target.version, sha)
        running = self.rollouts.current(name)
        if running is not None and running.version == target.version:
            return  # the same config is already on its way
        if running is None and target.version == fleet.last_good.version and not fleet.quarantined_revision:
            fleet.applied_revision = fleet.last_good_revision = sha
            self._revisions[target.version] = sha
            await asyncio.to_thread(self.store.mark_unchanged, name, sha)
            return
        # Config equal to the last good one after a bad revision is a rollback (`git revert`): one wave,
        # verified without a bake.
        kind = "rollback" if target.version == fleet.last_good.version else "rollout"
        fleet.applied_revision, fleet.applied_version = sha, target.version
        self._revisions[target.version] = sha
        await self.rollouts.start(name, sha, target, fleet.last_good, policy, kind, result.manifests)
        task, rollout = self.rollouts.active[name]
        task.add_done_callback(lambda _: self._after_rollout(name, rollout.revision, target))

    def _after_rollout(self, name: str, revision: str, target: Snapshot) -> None:
        rollout = self.rollouts.last.get(name)
        fleet = self.fleets.get(name)
        if rollout is None or fleet is None or rollout.revision != revision:
            return
        if rollout.result is Result.SUCCEEDED:
            fleet.last_good, fleet.last_good_revision, fleet.quarantined_revision = target, revision, ""
        elif rollout.result is Result.REVERTED:
            fleet.quarantined_revision, fleet.last_error = revision, rollout.reason
            fleet.applied_revision, fleet.applied_version = fleet.last_good_revision, fleet.last_good.version
            self._revisions[revert_snapshot(fleet.last_good, revision).version] = fleet.last_good_revision

    async def _forget(self, name: str, sha: str) -> None:
        log.info("fleet.removed", fleet=name, revision=sha[:12])
        await self.rollouts.cancel(name)
        await asyncio.to_thread(self.store.forget_fleet, name)
        self.fleets.pop(name, None)

    async def _known_fleets(self) -> None:
        self.ads.set_known_fleets(self.fleets)

    def _on_xds_event(self, event: XdsEvent) -> None:
        if event.kind == "NACK":
            self.metrics.nacks.labels(event.fleet, event.type_url.rsplit(".", 1)[-1]).inc()

    # ------------------------------------------------------------------ status (event loop)

    async def status_json(self) -> dict[str, Any]:
        names = sorted(self.fleets)
        histories = await asyncio.to_thread(lambda: {n: self.store.history(n) for n in names})
        return {
            "head": self.status.head,
            "webhook": self._webhook_json(),
            "last_poll_at": self.status.last_poll_at,
            "last_error": self.status.last_error,
            "findings": [f.to_json() for f in self.status.findings[:MAX_REPORTED_FINDINGS]],
            "fleets": [self._fleet_json(self.fleets[n], [h.to_json() for h in histories[n]]) for n in names],
        }

    def _webhook_json(self) -> dict[str, Any] | None:
        """Webhook lag: when the last delivery came, and how long after it the daemon saw the head move."""
        if self.webhook is None:
            return None
        status = self.status
        lag = status.head_seen_at - status.last_webhook_at if status.last_webhook_at and status.head_seen_at else None
        return {
            "last_delivery_at": status.last_webhook_at or None,
            "last_delivery_sha": status.last_webhook_sha,
            "head_detected_at": status.head_seen_at or None,
            "lag_seconds": round(lag, 3) if lag is not None and lag >= 0 else None,
        }

    async def history_json(self, fleet: str, limit: int) -> list[dict[str, Any]] | None:
        if fleet not in self.fleets:
            return None
        entries = await asyncio.to_thread(self.store.history, fleet, limit)
        return [h.to_json() for h in entries]

    def _fleet_json(self, fleet: FleetState, history: list[dict[str, Any]]) -> dict[str, Any]:
        rollout = self.rollouts.current(fleet.name)
        last = self.rollouts.last.get(fleet.name)
        shown = rollout or last
        # UNHEALTHY marks a node the running rollout found failing; once reverted it is on last good again.
        unhealthy = rollout.unhealthy if rollout is not None else {}
        nodes = [self._node_json(n, unhealthy) for n in self.ads.nodes(fleet.name)]
        states = {n["state"] for n in nodes}
        if rollout is not None:
            phase = "Progressing"
        elif NodeState.NACKED.value in states or "UNHEALTHY" in states:
            phase = "Degraded"
        elif fleet.rejected_revision or fleet.quarantined_revision:
            phase = "Failed"
        elif NodeState.STALE.value in states:
            phase = "Progressing"
        else:
            phase = "Synced"
        return {
            "name": fleet.name,
            "phase": phase,
            "applied_revision": fleet.applied_revision,
            "last_good_revision": fleet.last_good_revision,
            "last_good_version": fleet.last_good.version,
            "quarantined_revision": fleet.quarantined_revision,
            "rejected_revision": fleet.rejected_revision,
            "last_error": fleet.last_error,
            "rollout": shown.to_json() if shown is not None else None,
            "nodes": nodes,
            "history": history,
        }

    def _node_json(self, node: NodeStream, unhealthy: dict[str, str]) -> dict[str, Any]:
        view = node.view()
        view["revision"] = self._revisions.get(node.synced_version, "")
        if view["state"] == NodeState.SYNCED.value and node.node_id in unhealthy:
            view["state"], view["reason"] = "UNHEALTHY", unhealthy[node.node_id]
        return view
