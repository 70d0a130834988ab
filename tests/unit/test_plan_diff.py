"""The semantic route diff: what counts as a change, a move, or nothing."""

from __future__ import annotations

from reconciler.pipeline import build
from reconciler.plan import Plan, compute_plan, render
from reconciler.plan.routes import describe_cluster, describe_match
from tests.unit.manifest_helpers import FLEET, SERVICE, TO_APP, documents, gateway, virtual_service


def routes(*prefixes: str) -> str:
    return virtual_service(
        "shop", "shop.example.com", *(f"{{match: [{{uri: {{prefix: {p}}}}}], {TO_APP}}}" for p in prefixes)
    )


def plan_of(before: str, after: str) -> Plan:
    base = build({"a.yaml": documents(FLEET, gateway(), SERVICE, before).encode()})
    head = build({"a.yaml": documents(FLEET, gateway(), SERVICE, after).encode()})
    return compute_plan(base.snapshots, head.snapshots, head.findings, "base", "head")


def test_swapping_two_rules_is_a_move_even_though_no_route_changed() -> None:
    plan = plan_of(routes("/a", "/b"), routes("/b", "/a"))
    changes = {(c.key.match, c.change) for c in plan.fleets[0].routes}
    assert changes == {("prefix /a", "moved"), ("prefix /b", "moved")}
    assert "position in its virtual host: 0 -> 1" in render(plan, "text")


def test_an_identical_revision_changes_nothing() -> None:
    plan = plan_of(routes("/a", "/b"), routes("/a", "/b"))
    assert [f.status for f in plan.fleets] == ["unchanged"]
    assert plan.blast_radius().routes == 0
    assert "0 of 1 fleet(s)" in render(plan, "markdown")


def test_inserting_a_route_before_others_only_adds_it() -> None:
    plan = plan_of(routes("/a", "/b"), routes("/new", "/a", "/b"))
    assert [(c.key.match, c.change) for c in plan.fleets[0].routes] == [("prefix /new", "added")]


def test_descriptions_read_like_the_config() -> None:
    assert describe_cluster("outbound|80|v1|shop.internal") == "shop.internal:80 (v1)"
    assert describe_cluster("blackhole") == "blackhole"
    match = {
        "safeRegex": {"regex": "^/v[0-9]+"},
        "caseSensitive": False,
        "headers": [{"name": "x-user", "stringMatch": {"exact": "alice"}}, {"name": "x-debug", "presentMatch": True}],
        "queryParameters": [{"name": "q", "stringMatch": {"prefix": "a"}}],
    }
    assert describe_match(match) == (
        "regex ^/v[0-9]+, ignoring case, header x-user = alice, header x-debug present, query q starts with a"
    )
