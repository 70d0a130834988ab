"""A build with a BuildCache kept across revisions gives exactly the build without one: every finding, every
blocked fleet and every snapshot byte, through random edits, reverts, broken files and deletions."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.synthetic import RepoShape, change_destination, generate
from reconciler import pipeline_cache
from reconciler.pipeline import Build, build
from reconciler.pipeline_cache import BuildCache
from reconciler.translate import TranslateOptions, listener_build
from tests.unit.random_revisions import random_revision

GOLDEN = Path(__file__).parent.parent / "golden" / "cases"
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


def test_a_one_vs_change_rebuilds_only_its_route_configuration_and_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changes to VirtualServices of different servers, one after the other: each build plans only the route
    configuration that VirtualService is on and builds only its routes, even for a route configuration whose
    other VirtualServices were last built two builds before (its finer entries are kept with it)."""
    repo = generate(RepoShape(40, fleets=1, gateways_per_fleet=2))
    cache = BuildCache()
    build(repo.files(), cache=cache)
    planned: list[str] = []
    routed: list[str] = []
    plan, routes = listener_build.plan_route_config, pipeline_cache.vs_routes
    monkeypatch.setattr(listener_build, "plan_route_config", lambda c, n, *a: planned.append(n) or plan(c, n, *a))
    monkeypatch.setattr(pipeline_cache, "vs_routes", lambda c, vs, *a: routed.append(vs.ref) or routes(c, vs, *a))
    by_gateway = {v.gateways[0]: v for v in repo.virtual_services}  # one VirtualService of each gateway
    for changed in [*by_gateway.values(), *by_gateway.values()]:
        planned.clear()
        routed.clear()
        repo, edited = change_destination(repo, changed.index)
        files = repo.files()
        cached = build(files, cache=cache)
        assert len(planned) == 1 and routed == [f"{edited.namespace}/{edited.name}"], (planned, routed)
        assert_same_build(cached, build(files))
