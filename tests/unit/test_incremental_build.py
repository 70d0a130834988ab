"""A build with a BuildCache kept across revisions gives exactly the build without one: every finding, every
blocked fleet and every snapshot byte, through random edits, reverts, broken files and deletions."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2

from bench.synthetic import RepoShape, SyntheticRepo, change_destination, generate, single_gateway_vs
from reconciler.pipeline import Build, build
from reconciler.pipeline_cache import BuildCache
from reconciler.translate import TranslateOptions, route_configs
from reconciler.translate.snapshot import Snapshot, XdsResource, renew_snapshot
from tests.unit.random_revisions import random_revision

GOLDEN = Path(__file__).parent.parent / "golden" / "cases"
Files = Mapping[str, bytes]
# Textual edits that keep most files loadable while changing what they mean (or breaking them on purpose).
EDITS = (
    ("/probe/", "/probed/"),  # a route's match
    ("subset: v1", "subset: v2"),  # a weighted destination
    ("subset: v2", "subset: v9"),  # a subset no rule defines
    ("number: 8080", "number: 8081"),  # a gateway's or a service's port
    ("name: v2", "name: v3"),  # a DestinationRule subset
    ("address: 127.0.0.1", "address: 127.0.0.2"),  # an endpoint
    ("- '*'", "- vs-1.example.test"),  # a server's hosts
    ("timeout: ", "timeout: 1"),  # a duration, sometimes an invalid one
    ("prefix: ", "exact: "),  # a match kind
    ("http:\n", "http: [\n"),  # a YAML syntax error
)


def assert_same_build(cached: Build, fresh: Build) -> None:
    assert cached.findings == fresh.findings
    assert dict(cached.blocked) == dict(fresh.blocked)
    assert cached.snapshots.keys() == fresh.snapshots.keys()
    for fleet, snapshot in fresh.snapshots.items():
        assert cached.snapshots[fleet].version == snapshot.version
        assert dict(cached.snapshots[fleet].type_versions) == dict(snapshot.type_versions)
        bodies = {(r.type_url, r.name): r.body for r in snapshot.all_resources()}
        assert {(r.type_url, r.name): r.body for r in cached.snapshots[fleet].all_resources()} == bodies


@pytest.mark.parametrize("seed", range(4))
def test_random_edits_build_as_without_a_cache(seed: int) -> None:
    rng = random.Random(seed)
    files = generate(RepoShape(24, fleets=2, gateways_per_fleet=2, vs_per_service=4)).files()
    cache = BuildCache()
    history = [files]
    for _ in range(12):
        assert_same_build(build(files, cache=cache), build(files))
        files = random_revision(rng, files, history, EDITS)
        history.append(files)


def test_every_golden_case_through_one_cache() -> None:
    """The golden cases cover delegates, TLS, redirects, TCP and more; one cache sees them all in turn, and
    again with other options, so entries of one repo can never leak into another's result."""
    cache = BuildCache()
    cases = sorted(GOLDEN.glob("*/manifests.yaml"))
    assert cases
    for options in (None, TranslateOptions(default_bind="127.0.0.1")):
        for manifest in cases:
            files = {"manifests.yaml": manifest.read_bytes()}
            assert_same_build(build(files, options, cache=cache), build(files, options))


def test_entries_unused_by_the_latest_two_builds_are_dropped() -> None:
    files = generate(RepoShape(8)).files()
    cache = BuildCache()
    build(files, cache=cache)
    full = len(cache.files)
    gone = sorted(p for p in files if p.startswith("routes/"))[0]
    smaller = {p: b for p, b in files.items() if p != gone}
    build(smaller, cache=cache)
    assert len(cache.files) == full  # the previous build may come back (a revert)
    build(smaller, cache=cache)
    assert len(cache.files) == full - 1


def record_assembled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the route configurations assembled from here on (whole builds and renewals alike)."""
    assembled: list[str] = []
    assemble = route_configs.route_config_resource
    monkeypatch.setattr(route_configs, "route_config_resource", lambda n, *a: assembled.append(n) or assemble(n, *a))
    return assembled


def record_routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The VirtualServices whose routes are built from here on, once per server (and route configuration)."""
    routed: list[str] = []
    routes = route_configs.vs_routes
    monkeypatch.setattr(route_configs, "vs_routes", lambda c, vs, *a: routed.append(vs.ref) or routes(c, vs, *a))
    return routed


def record_built_hosts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts route configurations build from here on (whole builds and renewals alike), in order."""
    built: list[str] = []
    build_host = route_configs._HostBuilder.build

    def recording(self: Any, host: str, *args: Any) -> route_configs.HostBuild:
        built.append(host)
        return build_host(self, host, *args)

    monkeypatch.setattr(route_configs._HostBuilder, "build", recording)
    return built


def test_a_one_vs_change_rebuilds_only_its_host_and_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changes to VirtualServices of different servers, one after the other: each build assembles only the route
    configuration that VirtualService is on again, and builds only its routes."""
    repo = generate(RepoShape(40, fleets=1, gateways_per_fleet=2))
    cache = BuildCache()
    build(repo.files(), cache=cache)
    assembled, routed = record_assembled(monkeypatch), record_routed(monkeypatch)
    by_gateway = {v.gateways[0]: v for v in repo.virtual_services}  # one VirtualService of each gateway
    for changed in [*by_gateway.values(), *by_gateway.values()]:
        assembled.clear()
        routed.clear()
        repo, edited = change_destination(repo, changed.index)
        files = repo.files()
        cached = build(files, cache=cache)
        assert len(assembled) == 1 and routed == [f"{edited.namespace}/{edited.name}"], (assembled, routed)
        assert_same_build(cached, build(files))


def hosts_that_come_and_go(repo: SyntheticRepo) -> tuple[Files, list[tuple[Files, list[str]]]]:
    """The repo's files, and revisions that follow them: a VirtualService added and removed, given a second host and
    back, removed and put back; each with the hosts its route configuration builds again."""
    files = repo.files()
    vs = single_gateway_vs(repo, 5)  # its hosts and "extra-" hosts far apart: the hosts between are shifted
    original = files[vs.path]
    copy = original.replace(f"name: {vs.name}".encode(), f"name: {vs.name}-copy".encode())
    copy = copy.replace(vs.host.encode(), f"copy-{vs.host}".encode())
    second_host = original.replace(f"- {vs.host}".encode(), f"- {vs.host}\n  - extra-{vs.host}".encode())
    return files, [
        ({**files, vs.path.replace(".yaml", "-copy.yaml"): copy}, [f"copy-{vs.host}"]),  # a VirtualService added
        (files, []),  # and removed: its host goes, nothing is built
        ({**files, vs.path: second_host}, [vs.host, f"extra-{vs.host}"]),  # a host added to one
        (files, [vs.host]),  # and removed
        ({p: b for p, b in files.items() if p != vs.path}, []),  # the VirtualService removed
        (files, [vs.host]),  # and back
    ]


def test_virtual_services_and_hosts_that_come_and_go_rebuild_only_those_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding or removing a VirtualService, or a host of one, renews its route configuration host by host."""
    files, revisions = hosts_that_come_and_go(generate(RepoShape(40, fleets=1, gateways_per_fleet=2)))
    cache = BuildCache()
    build(files, cache=cache)
    assembled, built, routed = (
        record_assembled(monkeypatch),
        record_built_hosts(monkeypatch),
        record_routed(monkeypatch),
    )
    for revision, hosts in revisions:
        assembled.clear()
        built.clear()
        routed.clear()
        cached = build(revision, cache=cache)
        assert sorted(built) == sorted(hosts) and len(assembled) == 1, (built, assembled)
        assert len(routed) == (1 if hosts else 0), routed  # the VirtualService with a second host: routed once
        assert_same_build(cached, build(revision))


def _reverse_rules(spec: dict[str, Any]) -> None:
    spec["http"].reverse()


def _drop_first_rule(spec: dict[str, Any]) -> None:  # a VirtualService of one rule routes nothing then
    spec["http"].pop(0)


def _only_on_port_one(spec: dict[str, Any]) -> None:  # no route on the servers' ports: its hosts go
    for rule in spec["http"]:
        rule["match"] = [{**match, "port": 1} for match in rule.get("match") or [{}]]


VS_EDITS: tuple[Callable[[dict[str, Any]], None], ...] = (_reverse_rules, _drop_first_rule, _only_on_port_one)


def test_virtual_service_edits_of_every_golden_case_build_as_without_a_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every golden case with a file per document (so that resolve patches an edited VirtualService in): each
    VirtualService edited in turn, and back. Route configurations are renewed host by host through https
    redirects, several servers on a port, TLS servers and hosts that go and come back."""
    renewed = []
    patched = route_configs._patched
    monkeypatch.setattr(route_configs, "_patched", lambda *a: renewed.append(result := patched(*a)) or result)
    for case in sorted(GOLDEN.glob("*/manifests.yaml")):
        documents = case.read_text().split("\n---\n")
        files = {f"{i}.yaml": document.encode() for i, document in enumerate(documents)}
        cache = BuildCache()
        base = build(files)
        assert_same_build(build(files, cache=cache), base)
        for i, document in enumerate(documents):
            manifest = yaml.safe_load(document)
            if manifest.get("kind") != "VirtualService" or not manifest["spec"].get("http"):
                continue
            VS_EDITS[i % len(VS_EDITS)](manifest["spec"])
            edited = {**files, f"{i}.yaml": yaml.safe_dump(manifest).encode()}
            assert_same_build(build(edited, cache=cache), build(edited))
            assert_same_build(build(files, cache=cache), base)
    assert sum(result is not None for result in renewed) > 50  # the patch path, not only whole builds


def _resources(*names: str, port: int = 80) -> list[XdsResource]:
    clusters = [XdsResource.of(cluster_pb2.Cluster(name=name, connect_timeout={"seconds": port})) for name in names]
    endpoints = [XdsResource.of(endpoint_pb2.ClusterLoadAssignment(cluster_name=name)) for name in names]
    return [*clusters, *endpoints]


def test_a_renewed_snapshot_is_the_snapshot_of_its_resources() -> None:
    clusters = _resources("a", "b", "c")
    listeners = [XdsResource.of(listener_pb2.Listener(name="l", stat_prefix="one"))]
    groups = (clusters, listeners)
    first = renew_snapshot(groups, None)
    assert first == Snapshot.of_resources([*clusters, *listeners])
    # The same groups, or groups of equal resources: the very same snapshot.
    assert renew_snapshot(groups, (groups, first)) is first
    assert (
        renew_snapshot(
            (clusters, [XdsResource.of(listener_pb2.Listener(name="l", stat_prefix="one"))]), (groups, first)
        )
        is first
    )
    changes: list[tuple[list[XdsResource], list[XdsResource]]] = [
        ([*clusters[:1], _resources("b", port=81)[0], *clusters[2:]], listeners),  # a cluster: EDS version too
        (clusters, [XdsResource.of(listener_pb2.Listener(name="l", stat_prefix="two"))]),  # a listener
        (_resources("a", "b"), listeners),  # a cluster less: built again
        (_resources("a", "b", "d"), listeners),  # another name
    ]
    for changed in changes:
        renewed = renew_snapshot(changed, (groups, first))
        fresh = Snapshot.of_resources([resource for group in changed for resource in group])
        assert renewed == fresh and dict(renewed.type_versions) == dict(fresh.type_versions)
        assert renewed.version != first.version


def test_a_route_configuration_joined_from_the_same_parts_is_not_joined_to_tell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A route configuration built again with the same virtual hosts has the same version and the same parts: the
    snapshot stays as it was, and neither body is joined (megabytes at 10k VirtualServices)."""
    routes = [route_configs.route_config_resource("http.80", 80, [b"\x12\x02\x0a\x00"], [b"d" * 32]) for _ in range(2)]
    groups = ([*_resources("a"), routes[0]],)
    first = renew_snapshot(groups, None)
    assert renew_snapshot(([*_resources("a"), routes[1]],), (groups, first)) is first
    assert "body" not in routes[0].__dict__ and "body" not in routes[1].__dict__  # neither joined
