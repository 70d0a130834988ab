"""The steps of translation that a cache kept between builds may answer instead (pipeline_cache).

Each step is a pure function of its arguments, so a cache that keeps what earlier builds computed can answer
exactly what the step would; these defaults compute every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain

from reconciler.config.model import ResolvedConfig
from reconciler.translate.clusters import build_clusters
from reconciler.translate.route_configs import BuiltRouteConfig, RouteConfigRequest, build_route_config
from reconciler.translate.snapshot import Snapshot, XdsResource

Clusters = Callable[[ResolvedConfig], Sequence[XdsResource]]
RouteConfigs = Callable[[ResolvedConfig, RouteConfigRequest], BuiltRouteConfig]
# A fleet's name and its resources in groups (clusters, listeners and routes, secrets): a cache can tell an
# unchanged group by its identity.
Snapshots = Callable[[str, Sequence[Sequence[XdsResource]]], Snapshot]


def snapshot_each_time(fleet: str, groups: Sequence[Sequence[XdsResource]]) -> Snapshot:
    return Snapshot.build(chain.from_iterable(groups))


@dataclass(frozen=True)
class TranslateMemos:
    clusters: Clusters = build_clusters  # every service's clusters and endpoint assignments
    route_configs: RouteConfigs = build_route_config  # one route configuration
    snapshots: Snapshots = snapshot_each_time  # one fleet's snapshot
