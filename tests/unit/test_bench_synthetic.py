"""The benchmark's synthetic repo stays a valid config repo, and its floor keeps building the same resources."""

from __future__ import annotations

from bench.floor import fleet_messages
from bench.synthetic import RepoShape, change_destination, generate, single_gateway_vs
from reconciler.pipeline import build
from reconciler.translate.snapshot import ROUTE, XdsResource


def test_small_synthetic_repo_builds_without_findings() -> None:
    repo = generate(RepoShape(40))
    result = build(repo.files())
    assert result.findings == ()
    assert sorted(result.snapshots) == [f.name for f in repo.fleets]
    route_configs = [r.message() for s in result.snapshots.values() for r in s.of_type(ROUTE).values()]
    routes = sum(len(host.routes) for config in route_configs for host in config.virtual_hosts)
    # Every VS's ten rules became ten routes; a tenth of the VSs are served by both fleets.
    assert routes == repo.route_count() * 11 // 10


def test_floor_builds_the_resources_the_pipeline_builds() -> None:
    repo = generate(RepoShape(40))
    result = build(repo.files())
    for fleet, snapshot in result.snapshots.items():
        floor = {(r.type_url, r.name) for r in map(XdsResource.of, fleet_messages(repo, fleet))}
        assert floor == {(r.type_url, r.name) for r in snapshot.all_resources()}


def test_one_virtual_service_change_moves_only_its_routes() -> None:
    repo = generate(RepoShape(40))
    target = single_gateway_vs(repo, 0)
    changed_repo, changed = change_destination(repo, target.index)
    before, after = build(repo.files()), build(changed_repo.files())
    assert changed.rules[0].destinations != target.rules[0].destinations
    assert [p for p in changed_repo.files() if changed_repo.files()[p] != repo.files()[p]] == [changed.path]
    fleet = repo.gateway(target.gateways[0]).fleet
    old, new = before.snapshots[fleet], after.snapshots[fleet]
    assert [t for t in old.type_versions if old.type_versions[t] != new.type_versions[t]] == [ROUTE]
