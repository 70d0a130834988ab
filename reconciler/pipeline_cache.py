"""Memo tables that let `pipeline.build` redo only what a revision changed.

The loader's memo (manifests.load_memo) patches the latest load with the files whose bytes changed: a file
that did not change yields the very same Resource objects, so everything computed from those objects alone
can be reused by identity (resolve, validation, translation). A reused result is exactly what the
computation would have returned, and a cached build is byte-identical to a fresh one
(tests/unit/test_incremental_build.py holds us to that).

Translation keeps its results whole instead, one per route configuration, per fleet and for the clusters, and
renews them from the revision's identity diffs (translate.route_configs, translate.snapshot): a VirtualService
edited, added or removed costs its virtual hosts, not a walk over every one.

Memory stays bounded: each build ages every table, and an entry no lookup of the latest two builds used is
dropped (the clusters: only the latest build's are kept).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from reconciler.config.model import ResolvedConfig, ResolvedDestinationRule, Service
from reconciler.config.resolve_memo import ResolveMemo
from reconciler.manifests.load_memo import LoadMemo
from reconciler.manifests.loader import ManifestSet
from reconciler.memo import Memo, Same
from reconciler.translate.clusters import build_clusters, encode_service_clusters
from reconciler.translate.memos import TranslateMemos
from reconciler.translate.route_configs import (
    BuiltRouteConfig,
    RouteConfigBuild,
    RouteConfigRequest,
    renew_route_config,
)
from reconciler.translate.snapshot import Snapshot, XdsResource, renew_snapshot
from reconciler.validation import ValidationMemo

# A Service is made from its ServiceEntry alone, a ResolvedDestinationRule from its sources (config.resolve).
ServiceKey = tuple[str, Same, tuple[Same, ...]]  # host, ServiceEntry, the DestinationRule's sources
RouteConfigKey = tuple[str, str, int, bool]  # fleet, name, port, redirects
FleetResources = tuple[Sequence[Sequence[XdsResource]], Snapshot]  # a fleet's resources in groups, its snapshot
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class _Clusters:
    """The clusters of one build, with each service's, for a build whose services or rules changed to reuse."""

    services: Mapping[str, Service]
    destination_rules: Mapping[str, ResolvedDestinationRule]
    resources: tuple[XdsResource, ...]
    by_service: dict[ServiceKey, tuple[XdsResource, ...]]

    def built_from(self, config: ResolvedConfig) -> bool:
        return self.services is config.services and self.destination_rules is config.destination_rules


class BuildCache:
    """What the daemon keeps between revisions and hands to every `pipeline.build`."""

    def __init__(self) -> None:
        self.files = LoadMemo()
        self.resolve = ResolveMemo()  # resolve renews it
        self.validation = ValidationMemo()  # validate ages it
        # Each route configuration's and each fleet's latest build, renewed by the next one.
        self.route_configs: Memo[RouteConfigKey, RouteConfigBuild | None] = Memo()
        self.fleet_resources: Memo[str, FleetResources | None] = Memo()
        self._clusters: _Clusters | None = None  # the latest build's (one for every fleet)
        self.translate_memos = TranslateMemos(self.clusters, self.route_config, self.snapshot)

    def start_build(self) -> None:
        self.route_configs.age()
        self.fleet_resources.age()

    def load(self, files: Mapping[str, bytes], lenient: bool) -> ManifestSet:
        """This build's manifests. What was built from other services or destination rules needs no dropping here:
        a route configuration's build is reused only while resolve hands back the very same services and rules
        (translate.route_configs), and so are the clusters."""
        return self.files.load(files, lenient)

    # The cached forms of the pipeline's per-item steps, with the signatures the stages take.

    def route_config(self, config: ResolvedConfig, request: RouteConfigRequest) -> BuiltRouteConfig:
        """Renewed from the build of the same route configuration for an earlier revision: a one-VirtualService
        change re-plans only that VirtualService's hosts on the servers it is bound to (translate.route_configs)."""
        key = (request.fleet, request.name, request.port, request.redirects)
        return _renew(self.route_configs, key, lambda before: renew_route_config(config, request, before)).built

    def snapshot(self, fleet: str, groups: Sequence[Sequence[XdsResource]]) -> Snapshot:
        """The fleet's latest snapshot, patched where its resources are other objects (translate.snapshot)."""
        return _renew(self.fleet_resources, fleet, lambda before: (groups, renew_snapshot(groups, before)))[1]

    def clusters(self, config: ResolvedConfig) -> tuple[XdsResource, ...]:
        """Every fleet's clusters: the latest build's while the services and rules are the very same objects (as
        resolve hands them back while no ServiceEntry or DestinationRule changed), else built again from each
        unchanged service's clusters."""
        latest = self._clusters
        if latest is not None and latest.built_from(config):
            return latest.resources
        known = latest.by_service if latest is not None else {}
        by_service: dict[ServiceKey, tuple[XdsResource, ...]] = {}

        def clusters_of(service: Service, rule: ResolvedDestinationRule | None) -> tuple[XdsResource, ...]:
            key = (service.host, Same(service.source), tuple(Same(s) for s in rule.sources) if rule else ())
            found = known.get(key)
            by_service[key] = found = encode_service_clusters(service, rule) if found is None else found
            return found

        resources = build_clusters(config, clusters_of)
        self._clusters = _Clusters(config.services, config.destination_rules, resources, by_service)
        return resources


def _renew(memo: Memo[K, V | None], key: K, renew: Callable[[V | None], V]) -> V:
    """`renew` what `memo` holds for `key` (None if nothing), and keep the result there in its place."""
    renewed = renew(memo.get(key, lambda: None))
    memo.keep({key: renewed})
    return renewed
