"""Runs at most one rollout per fleet on the event loop, supersedes it when a newer revision arrives, and
records every outcome durably (store writes go to a worker thread)."""

from __future__ import annotations

import asyncio
import time

import structlog

from reconciler.api.metrics import Metrics
from reconciler.manifests.loader import ManifestSet
from reconciler.manifests.model import RolloutPolicy
from reconciler.rollout.attribution import attribute_rejection
from reconciler.rollout.controller import RolloutController
from reconciler.rollout.model import Result, Rollout
from reconciler.state import StateStore
from reconciler.translate.snapshot import Snapshot
from reconciler.xds import AdsServer

log = structlog.get_logger("reconciler.rollout")


class RolloutManager:
    def __init__(self, ads: AdsServer, store: StateStore, metrics: Metrics) -> None:
        self.ads = ads
        self.store = store
        self.metrics = metrics
        self.active: dict[str, tuple[asyncio.Task[Rollout], Rollout]] = {}
        self.last: dict[str, Rollout] = {}  # the most recent rollout of each fleet, finished or not

    def current(self, fleet: str) -> Rollout | None:
        entry = self.active.get(fleet)
        return entry[1] if entry else None

    async def start(
        self, fleet: str, revision: str, target: Snapshot, last_good: Snapshot, policy: RolloutPolicy, kind: str,
        manifests: ManifestSet | None = None,
    ) -> None:  # fmt: skip
        """Begin moving `fleet` to `target`; a rollout already running for it is superseded first."""
        await self.cancel(fleet)
        rollout = Rollout(fleet, revision, target.version, kind=kind)
        await asyncio.to_thread(self.store.begin_rollout, fleet, revision, target, kind, rollout.started_at)

        def explain(type_url: str, error: str) -> str:
            return attribute_rejection(type_url, error, target, last_good, manifests) if manifests else ""

        controller = RolloutController(self.ads, rollout, policy, target, last_good, explain=explain)
        task = asyncio.create_task(self._run(controller), name=f"rollout-{fleet}")
        self.active[fleet] = (task, rollout)
        self.last[fleet] = rollout

    async def cancel(self, fleet: str) -> None:
        entry = self.active.pop(fleet, None)
        if entry is None:
            return
        task, _ = entry
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def cancel_all(self) -> None:
        for fleet in list(self.active):
            entry = self.active.pop(fleet)
            entry[0].cancel()
            await asyncio.gather(entry[0], return_exceptions=True)

    async def _run(self, controller: RolloutController) -> Rollout:
        rollout = controller.rollout
        try:
            await controller.run()
        except asyncio.CancelledError:
            if rollout.result is Result.SUPERSEDED:
                await self._record(rollout)
            raise
        except Exception as exc:  # a bug must not leave the fleet half-moved: say so and keep last good
            log.exception("rollout.crashed", fleet=rollout.fleet, revision=rollout.revision[:12])
            rollout.result, rollout.reason, rollout.finished_at = Result.REVERTED, f"internal error: {exc}", time.time()
            controller.release()
        if self.active.get(rollout.fleet, (None, None))[1] is rollout:
            del self.active[rollout.fleet]
        await self._record(rollout)
        return rollout

    async def _record(self, rollout: Rollout) -> None:
        assert rollout.result is not None
        details = {"waves": [w.to_json() for w in rollout.waves], "unhealthy": dict(rollout.unhealthy)}
        await asyncio.to_thread(
            self.store.finish_rollout, rollout.fleet, rollout.revision, rollout.kind, rollout.result.value,
            rollout.reason, rollout.started_at, details,
        )  # fmt: skip
        self.metrics.rollouts.labels(rollout.fleet, rollout.result.value).inc()
        if rollout.result is Result.REVERTED:
            reason = rollout.failure.value if rollout.failure else "error"
            self.metrics.reverts.labels(rollout.fleet, reason).inc()
        for wave in rollout.waves:
            if wave.acked_at:
                self.metrics.push.labels(rollout.fleet).observe(wave.acked_at - wave.started_at)
            if wave.finished_at:
                self.metrics.verify.labels(rollout.fleet).observe(wave.finished_at - wave.started_at)
        log.info("rollout.recorded", fleet=rollout.fleet, revision=rollout.revision[:12],
                 result=rollout.result.value, phase=rollout.state.value, reason=rollout.reason)  # fmt: skip
