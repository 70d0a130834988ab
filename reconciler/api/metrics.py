"""Prometheus metrics (`GET /metrics`), on a registry of the daemon's own (not the process-global one)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.xds import AdsServer

_DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _ConnectedNodes(Collector):
    """Computed at scrape time from the ADS server, so it can never drift from the truth."""

    def __init__(self, ads: AdsServer) -> None:
        self._ads = ads

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "reconciler_connected_nodes",
            "Envoy nodes connected over ADS, by fleet and sync state",
            labels=["fleet", "state"],
        )
        for (fleet, state), count in sorted(Tally((n.fleet, n.state().value) for n in self._ads.nodes()).items()):
            family.add_metric([fleet, state], count)
        yield family


class Metrics:
    def __init__(self, ads: AdsServer) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.detection_lag = Histogram(
            "reconciler_change_detection_lag_seconds", "Commit time to the daemon seeing it", registry=r,
            buckets=(*_DURATIONS, 600, 1800),
        )  # fmt: skip
        self.build = Histogram("reconciler_build_seconds", "Load, validate and translate one revision", registry=r,
                               buckets=_DURATIONS)  # fmt: skip
        self.push = Histogram("reconciler_push_seconds", "Push of a wave until every node ACKed", ["fleet"],
                              registry=r, buckets=_DURATIONS)  # fmt: skip
        self.verify = Histogram("reconciler_verify_seconds", "Verification of one wave, bake included", ["fleet"],
                                registry=r, buckets=_DURATIONS)  # fmt: skip
        self.rollouts = Counter("reconciler_rollouts", "Rollouts by result", ["fleet", "result"], registry=r)
        self.nacks = Counter("reconciler_nacks", "NACKs received", ["fleet", "type"], registry=r)
        self.reverts = Counter("reconciler_reverts", "Automatic reverts by reason", ["fleet", "reason"], registry=r)
        r.register(_ConnectedNodes(ads))

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
