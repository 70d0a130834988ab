"""One fleet's rollout: waves pushed through per-node snapshots, each verified, promoted or reverted.

Runs as an asyncio task on the daemon's loop. Admin-API calls are blocking (`requests`), so they run in
worker threads. Nodes outside the current and earlier waves, and nodes that connect mid-rollout, keep the
fleet's last good snapshot: only promotion changes what the fleet as a whole is served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlparse

import structlog

from reconciler.manifests.model import Probe, RolloutPolicy
from reconciler.rollout.health import AdminClient, Counters, probe
from reconciler.rollout.model import FailureKind, Result, Rollout, RolloutState, WaveReport
from reconciler.rollout.policy import plan_waves
from reconciler.translate.snapshot import CLUSTER, LISTENER, ROUTE, Snapshot, content_digest
from reconciler.xds import AdsServer, NodeState, NodeStream

log = structlog.get_logger("reconciler.rollout")

# Fewer requests than this during a wave and its bake are noise, not a rate: an idle gateway is not judged.
MIN_REQUESTS = 20
ACK_POLL_S = 0.05
ADMIN_POLL_S = 0.2
BAKE_TICK_S = 0.5


class WaveFailed(Exception):
    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def revert_snapshot(last_good: Snapshot, reverted_revision: str) -> Snapshot:
    """The last good resources under new version strings, so a revert is a push every node must ACK again
    (Envoy skips unchanged content, so it costs nothing). Deterministic: status can name its revision."""
    salt = f"revert:{reverted_revision}".encode()
    versions = {t: content_digest(v.encode(), salt) for t, v in last_good.type_versions.items()}
    return Snapshot(last_good.resources, content_digest(last_good.version.encode(), salt), versions)


class RolloutController:
    def __init__(
        self,
        ads: AdsServer,
        rollout: Rollout,
        policy: RolloutPolicy,
        target: Snapshot,
        last_good: Snapshot,
        on_change: Callable[[Rollout], None] = lambda _: None,
        explain: Callable[[str, str], str] = lambda type_url, error: "",
    ) -> None:
        """`explain(type_url, error)` names what a rejection points at (see `attribution.py`)."""
        self.ads = ads
        self.rollout = rollout
        self.policy = policy
        self.target = target
        self.last_good = last_good
        self._on_change = on_change
        self._explain = explain
        self._touched: list[str] = []
        self._log = log.bind(fleet=rollout.fleet, revision=rollout.revision[:12])

    @property
    def fleet(self) -> str:
        return self.rollout.fleet

    def _changed(self) -> None:
        self._on_change(self.rollout)

    async def run(self) -> Rollout:
        rollout = self.rollout
        nodes = sorted({s.node_id for s in self.ads.nodes(self.fleet)})
        waves = [nodes] if rollout.kind == "rollback" and nodes else plan_waves(self.policy, nodes)
        rollout.waves = [WaveReport(i + 1, w) for i, w in enumerate(waves)]
        self._log.info("rollout.started", phase="Pending", nodes=len(nodes), waves=[len(w) for w in waves])
        try:
            for report in rollout.waves:
                await self._wave(report)
        except WaveFailed as failure:
            await self._revert(failure)
            return rollout
        except asyncio.CancelledError:
            self.release()
            self._finish(RolloutState.SUPERSEDED, Result.SUPERSEDED, "a newer revision replaced it mid-rollout")
            raise
        self._promote()
        return rollout

    async def _wave(self, report: WaveReport) -> None:
        rollout = self.rollout
        rollout.state, rollout.wave = RolloutState.WAVE, report.index
        report.state, report.started_at = "Pushing", time.time()
        self._changed()
        wave_log = self._log.bind(wave=report.index)
        try:
            baseline = await self._counters(report.nodes)
            for node in report.nodes:
                self.ads.set_node_snapshot(self.fleet, node, self.target)
                self._touched.append(node)
            await self._await_acks(report.nodes, self.target, self.rollout.revision)
            report.acked_at = time.time()
            await self._await_ready(report.nodes, baseline)
            await self._run_probes(report.nodes)
            bake = 0.0 if rollout.kind == "rollback" else self.policy.bake.seconds
            rollout.state, report.state = RolloutState.BAKING, "Baking"
            self._changed()
            wave_log.info("rollout.baking", phase="Baking", seconds=bake)
            await self._bake(report.nodes, baseline, bake)
        except WaveFailed as failure:
            report.state, report.reason, report.finished_at = "Failed", failure.reason, time.time()
            wave_log.warning("rollout.wave_failed", phase="Failed", reason=failure.reason, kind=failure.kind.value)
            raise
        report.state, report.finished_at = "Passed", time.time()
        wave_log.info("rollout.wave_passed", phase="Passed", nodes=report.nodes)

    # ------------------------------------------------------------------ verification

    def _stream(self, node: str) -> NodeStream | None:
        streams = [s for s in self.ads.nodes(self.fleet) if s.node_id == node]
        return max(streams, key=lambda s: s.stream_id) if streams else None

    async def _await_acks(self, nodes: Sequence[str], snapshot: Snapshot, revision: str) -> None:
        """Every node ACKs every type of `snapshot`; a NACK fails at once, with Envoy's words."""
        deadline = time.monotonic() + self.policy.ack_timeout.seconds
        while True:
            pending = []
            for node in nodes:
                stream = self._stream(node)
                if stream is not None and stream.snapshot.version == snapshot.version:
                    if stream.state() is NodeState.NACKED:
                        errors = "; ".join(
                            f"{t.rsplit('.', 1)[-1]}: {e.strip()}{self._explain(t, e)}"
                            for t, e in stream.errors().items()
                        )
                        self.rollout.unhealthy[node] = "NACKED"
                        raise WaveFailed(FailureKind.NACK, f"node {node} rejected revision {revision[:12]}: {errors}")
                    if stream.synced_version == snapshot.version:
                        continue
                pending.append(node)
            if not pending:
                return
            if time.monotonic() > deadline:
                missing = [n for n in pending if self._stream(n) is None]
                kind = FailureKind.NODE_LOST if missing else FailureKind.ACK_TIMEOUT
                raise WaveFailed(
                    kind,
                    f"node(s) {', '.join(pending)} did not ACK revision {revision[:12]} within "
                    f"{self.policy.ack_timeout}" + (f" (disconnected: {', '.join(missing)})" if missing else ""),
                )
            await asyncio.sleep(ACK_POLL_S)

    def _admin(self, node: str) -> AdminClient:
        stream = self._stream(node)
        if stream is None or not stream.admin_url:
            raise WaveFailed(
                FailureKind.NOT_READY,
                f"node {node} has no node.metadata.admin_url, so it cannot be verified; "
                "generate its bootstrap with `reconciler bootstrap`",
            )
        return AdminClient(stream.admin_url)

    async def _counters(self, nodes: Sequence[str]) -> dict[str, Counters]:
        clients = {node: self._admin(node) for node in nodes}

        async def read(node: str, client: AdminClient) -> Counters:
            try:
                return await asyncio.to_thread(client.counters)
            except OSError as exc:
                self.rollout.unhealthy[node] = "admin API unreachable"
                raise WaveFailed(FailureKind.NOT_READY, f"node {node}'s admin API did not answer: {exc}") from None

        values = await asyncio.gather(*(read(n, c) for n, c in clients.items()))
        return dict(zip(clients, values, strict=True))

    async def _await_ready(self, nodes: Sequence[str], baseline: dict[str, Counters]) -> None:
        """Nothing rejected, nothing warming, connected, and the pushed resources active in /config_dump."""
        expected = {
            "listeners": set(self.target.of_type(LISTENER)),
            "routes": set(self.target.of_type(ROUTE)),
            "clusters": set(self.target.of_type(CLUSTER)),
        }
        deadline = time.monotonic() + self.policy.ack_timeout.seconds
        while True:
            problems = {}
            current = await self._counters(nodes)
            for node in nodes:
                delta = current[node].since(baseline[node])
                if delta.update_rejected > 0:
                    self.rollout.unhealthy[node] = "update rejected"
                    raise WaveFailed(
                        FailureKind.REJECTED_UPDATE,
                        f"node {node} counted {delta.update_rejected} rejected update(s) (*.update_rejected)",
                    )
                names = await asyncio.to_thread(self._admin(node).active_resource_names)
                missing = {kind: sorted(want - names[kind]) for kind, want in expected.items() if want - names[kind]}
                if delta.warming_clusters or delta.warming_listeners or delta.connected != 1 or missing:
                    problems[node] = (
                        f"warming clusters {delta.warming_clusters}, warming listeners {delta.warming_listeners}, "
                        f"control plane connected {delta.connected}, not active: {missing or 'none'}"
                    )
            if not problems:
                return
            if time.monotonic() > deadline:
                for node in problems:
                    self.rollout.unhealthy[node] = "not ready"
                details = "; ".join(f"{n}: {p}" for n, p in problems.items())
                raise WaveFailed(FailureKind.NOT_READY, f"not ready within {self.policy.ack_timeout}: {details}")
            await asyncio.sleep(ADMIN_POLL_S)

    async def _run_probes(self, nodes: Sequence[str]) -> None:
        for node in nodes:
            host = urlparse(self._admin(node).admin_url).hostname or "127.0.0.1"
            for check in self.policy.probes:
                status = await asyncio.to_thread(probe, host, check.port, check.path, check.host)
                if status != check.expect_status:
                    self.rollout.unhealthy[node] = f"probe {check.name} failed"
                    raise WaveFailed(FailureKind.PROBE, _probe_failure(node, host, check, status))

    async def _bake(self, nodes: Sequence[str], baseline: dict[str, Counters], seconds: float) -> None:
        """Watch the wave's 5xx share until the bake time is over; probes again at the end."""
        end = time.monotonic() + seconds
        while True:
            current = await self._counters(nodes)
            deltas = {n: current[n].since(baseline[n]) for n in nodes}
            completed = sum(d.downstream_rq_completed for d in deltas.values())
            errors = sum(d.downstream_rq_5xx for d in deltas.values())
            if completed >= MIN_REQUESTS and errors / completed > self.policy.max_error_rate:
                connect_fail = sum(d.upstream_cx_connect_fail for d in deltas.values())
                for node, delta in deltas.items():
                    if delta.downstream_rq_5xx:
                        self.rollout.unhealthy[node] = "5xx"
                raise WaveFailed(
                    FailureKind.ERROR_RATE,
                    f"{errors} of {completed} requests ({errors / completed:.0%}) answered 5xx, over maxErrorRate "
                    f"{self.policy.max_error_rate:.0%} (upstream connect failures: {connect_fail})",
                )
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(BAKE_TICK_S, remaining))
        if seconds > 0:
            await self._run_probes(nodes)

    # ------------------------------------------------------------------ outcomes

    def _promote(self) -> None:
        self.ads.set_fleet_snapshot(self.fleet, self.target)
        self.ads.clear_node_snapshots(self.fleet)
        reason = "" if self.rollout.waves else "no node connected; the fleet serves it as nodes join"
        self._finish(RolloutState.PROMOTED, Result.SUCCEEDED, reason)
        self._log.info("rollout.promoted", phase="Promoted")

    async def _revert(self, failure: WaveFailed) -> None:
        rollout = self.rollout
        rollout.state, rollout.failure = RolloutState.REVERTING, failure.kind
        self._changed()
        revert = revert_snapshot(self.last_good, rollout.revision)
        self._log.warning("rollout.reverting", phase="Reverting", reason=failure.reason, nodes=self._touched)
        for node in self._touched:
            self.ads.set_node_snapshot(self.fleet, node, revert)
        reason = failure.reason
        try:
            await self._await_acks(self._touched, revert, "last good")
        except WaveFailed as unconfirmed:
            reason += f"; the revert is not confirmed yet: {unconfirmed.reason}"
        self._finish(RolloutState.REVERTED, Result.REVERTED, reason)
        self._log.warning("rollout.reverted", phase="Reverted", reason=reason)

    def release(self) -> None:
        for node in self._touched:
            self.ads.set_node_snapshot(self.fleet, node, None)

    def _finish(self, state: RolloutState, result: Result, reason: str) -> None:
        self.rollout.state, self.rollout.result, self.rollout.reason = state, result, reason
        self.rollout.finished_at = time.time()
        self._changed()


def _probe_failure(node: str, host: str, check: Probe, status: int) -> str:
    answer = f"answered {status}" if status else "did not answer"
    return (
        f"probe {check.name!r} through node {node} (http://{host}:{check.port}{check.path}, Host {check.host or '-'}) "
        f"{answer}, expected {check.expect_status}"
    )
