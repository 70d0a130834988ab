"""What an Envoy says about itself through its admin API, read with `requests` (blocking: call off-loop).

Signals (shared/reference/xds-protocol.md §4, envoy-measurements.md §4): `*.update_rejected` counters (a NACK
may be partly applied), warming clusters and listeners, the control-plane connection, the resources present
in /config_dump, and the HTTP connection managers' and clusters' error counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

ADMIN_TIMEOUT_S = 2.0
STATS_FILTER = (
    r"update_rejected$|downstream_rq_completed$|downstream_rq_5xx$|upstream_rq_5xx$|upstream_cx_connect_fail$"
    r"|^cluster_manager\.warming_clusters$|^listener_manager\.total_listeners_warming$|^control_plane\.connected_state$"
)


@dataclass(frozen=True)
class Counters:
    """The counters a wave is judged on, summed over every listener and cluster of one node."""

    update_rejected: int = 0
    downstream_rq_completed: int = 0
    downstream_rq_5xx: int = 0
    upstream_rq_5xx: int = 0
    upstream_cx_connect_fail: int = 0
    warming_clusters: int = 0
    warming_listeners: int = 0
    connected: int = 0

    def since(self, base: Counters) -> Counters:
        """Deltas of the monotonic counters; gauges (warming, connected) keep their current value."""
        return Counters(
            update_rejected=self.update_rejected - base.update_rejected,
            downstream_rq_completed=self.downstream_rq_completed - base.downstream_rq_completed,
            downstream_rq_5xx=self.downstream_rq_5xx - base.downstream_rq_5xx,
            upstream_rq_5xx=self.upstream_rq_5xx - base.upstream_rq_5xx,
            upstream_cx_connect_fail=self.upstream_cx_connect_fail - base.upstream_cx_connect_fail,
            warming_clusters=self.warming_clusters,
            warming_listeners=self.warming_listeners,
            connected=self.connected,
        )


def counters_from_stats(stats: dict[str, int]) -> Counters:
    def total(suffix: str, prefix: str = "") -> int:
        return sum(v for k, v in stats.items() if k.endswith(suffix) and k.startswith(prefix))

    return Counters(
        update_rejected=total(".update_rejected"),
        # HCM stats are `http.<stat_prefix>.downstream_rq_*`; the admin listener's are `http.admin.*`.
        downstream_rq_completed=total(".downstream_rq_completed", "http.")
        - stats.get("http.admin.downstream_rq_completed", 0),
        downstream_rq_5xx=total(".downstream_rq_5xx", "http.") - stats.get("http.admin.downstream_rq_5xx", 0),
        upstream_rq_5xx=total(".upstream_rq_5xx", "cluster."),
        upstream_cx_connect_fail=total(".upstream_cx_connect_fail", "cluster."),
        warming_clusters=stats.get("cluster_manager.warming_clusters", 0),
        warming_listeners=stats.get("listener_manager.total_listeners_warming", 0),
        connected=stats.get("control_plane.connected_state", 0),
    )


class AdminClient:
    def __init__(self, admin_url: str, timeout: float = ADMIN_TIMEOUT_S) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.timeout = timeout

    def stats(self) -> dict[str, int]:
        # Only the counters a wave is judged on: a node with thousands of clusters has megabytes of stats.
        params = {"format": "json", "filter": STATS_FILTER}
        response = requests.get(f"{self.admin_url}/stats", params=params, timeout=self.timeout)
        response.raise_for_status()
        # Counters and gauges carry integers; text readouts (e.g. control_plane.identifier) carry strings.
        return {s["name"]: s["value"] for s in response.json().get("stats", []) if isinstance(s.get("value"), int)}

    def counters(self) -> Counters:
        return counters_from_stats(self.stats())

    def active_resource_names(self) -> dict[str, set[str]]:
        """Names of the active dynamic listeners, route configs and clusters, from /config_dump."""
        response = requests.get(f"{self.admin_url}/config_dump", timeout=self.timeout)
        response.raise_for_status()
        names: dict[str, set[str]] = {"listeners": set(), "routes": set(), "clusters": set()}
        for config in response.json().get("configs", []):
            _collect(config, names)
        return names


def _collect(config: dict[str, Any], names: dict[str, set[str]]) -> None:
    for entry in config.get("dynamic_listeners", []):
        if "active_state" in entry:
            names["listeners"].add(entry["name"])
    for entry in config.get("dynamic_route_configs", []):
        names["routes"].add(entry.get("route_config", {}).get("name", ""))
    for entry in config.get("dynamic_active_clusters", []):
        names["clusters"].add(entry.get("cluster", {}).get("name", ""))


def probe(host: str, port: int, path: str, host_header: str, timeout: float = ADMIN_TIMEOUT_S) -> int:
    """One HTTP request through a node's gateway listener; the status code, or 0 when it does not answer."""
    headers = {"Host": host_header} if host_header else {}
    try:
        return requests.get(f"http://{host}:{port}{path}", headers=headers, timeout=timeout).status_code
    except requests.RequestException:
        return 0
