"""A ValidationMemo kept across revisions gives exactly the findings of a validation without one, in the same
order: through edits of the ServiceEntries, DestinationRules, Gateways, Fleets and delegates that unchanged
VirtualServices read, through random edits and reverts, and across every golden case."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.synthetic import RepoShape, change_destination, generate, single_gateway_vs
from reconciler.config.resolve import resolve
from reconciler.diagnostics import Finding
from reconciler.manifests.loader import load_manifests
from reconciler.pipeline_cache import BuildCache
from reconciler.validation import validate
from reconciler.validation.index import RepoIndex
from reconciler.validation.item_checks import ItemChecks
from tests.unit.manifest_helpers import (
    FLEET,
    TO_APP,
    destination_rule,
    documents,
    gateway,
    http_server,
    virtual_service,
)
from tests.unit.manifest_helpers import SERVICE as PLAIN_SERVICE
from tests.unit.random_revisions import random_revision

GOLDEN = Path(__file__).parent.parent / "golden" / "cases"

SERVICE = PLAIN_SERVICE.replace("{address: 10.0.0.1}", "{address: 10.0.0.1, labels: {version: v1}}")
RULE = destination_rule(
    "app",
    "app.internal",
    "trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}",
    "subsets: [{name: v1, labels: {version: v1}}]",
)
WILDCARD_RULE = destination_rule("wild", "*.internal", "trafficPolicy: {loadBalancer: {simple: RANDOM}}")
SHOP = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.example.com]
  gateways: [gw]
  http:
  - match: [{port: 80, uri: {prefix: /a}}]
    route: [{destination: {host: app.internal, subset: v1}}]
  - match: [{uri: {prefix: /b}}]
    delegate: {name: child}
"""
CHILD = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: child}
spec:
  http:
  - route: [{destination: {host: app.internal}}]
"""
REPO = {
    "fleet.yaml": documents(FLEET),
    "gateway.yaml": documents(gateway(http_server(80, '["*.example.com"]'))),
    "service.yaml": documents(SERVICE),
    "rule.yaml": documents(RULE),
    "wild-rule.yaml": documents(WILDCARD_RULE),
    "shop.yaml": documents(SHOP),
    "child.yaml": documents(CHILD),
}
SECOND_PORT = "{number: 81, name: http-alt, protocol: HTTP}"
SHOP_REF = "VirtualService default/shop"
CHILD_REF = "VirtualService default/child"
RULE_REF = "DestinationRule default/app"


def edited(path: str, old: str, new: str) -> Callable[[dict[str, str]], dict[str, str]]:
    def edit(files: dict[str, str]) -> dict[str, str]:
        return {**files, path: files[path].replace(old, new)} if path in files else files

    return edit


def deleted(path: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda files: {p: text for p, text in files.items() if p != path}


def added(path: str, text: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda files: {**files, path: documents(text)}


# Each edit leaves `shop.yaml` (or the DestinationRule) untouched and changes what its findings must say.
DEPENDENT_EDITS = [
    (edited("rule.yaml", "name: v1", "name: v2"), "subset-not-found", SHOP_REF),
    (edited("service.yaml", "ports: [", f"ports: [{SECOND_PORT}, "), "destination-port-required", CHILD_REF),
    (edited("service.yaml", "labels: {version: v1}", "labels: {version: v7}"), "subset-selects-no-endpoints", RULE_REF),
    (deleted("service.yaml"), "destination-host-not-found", SHOP_REF),
    (deleted("service.yaml"), "destination-rule-host-not-found", RULE_REF),
    (deleted("service.yaml"), "destination-rule-host-not-found", "DestinationRule default/wild"),
    (edited("gateway.yaml", "*.example.com", "*.example.org"), "vs-host-not-in-gateway", SHOP_REF),
    (edited("gateway.yaml", "number: 80,", "number: 8080,"), "match-port-unused", SHOP_REF),
    (deleted("gateway.yaml"), "gateway-not-found", SHOP_REF),
    (edited("child.yaml", "spec:\n", "spec:\n  hosts: [child.example.com]\n"), "delegate-not-found", SHOP_REF),
    (added("early-rule.yaml", RULE.replace("{name: app}", "{name: aaa}")), "destination-rule-policy-ignored", RULE_REF),
    (edited("fleet.yaml", "{app: gw}", "{app: other}"), "gateway-selects-no-fleet", "Gateway default/gw"),
]


class Validator:
    """Validation as the daemon runs it: one BuildCache (same objects for unchanged files) and one memo."""

    def __init__(self) -> None:
        self.cache = BuildCache()
        self.memo = self.cache.validation

    def memoized(self, files: dict[str, bytes]) -> list[Finding]:
        self.cache.start_build()
        manifests = self.cache.load(files, lenient=False)
        config = resolve(manifests, memo=self.cache.resolve)
        return validate(manifests, config, self.memo)


def fresh(files: dict[str, bytes]) -> list[Finding]:
    manifests = load_manifests(files)
    return validate(manifests, resolve(manifests))


def encoded(files: dict[str, str]) -> dict[str, bytes]:
    return {path: text.encode() for path, text in files.items()}


def has(findings: list[Finding], code: str, resource: str) -> bool:
    return any(f.code == code and f.resource == resource for f in findings)


@pytest.mark.parametrize(("edit", "code", "resource"), DEPENDENT_EDITS)
def test_an_edit_to_what_an_unchanged_resource_reads_changes_its_findings(
    edit: Callable[[dict[str, str]], dict[str, str]], code: str, resource: str
) -> None:
    validator = Validator()
    before = validator.memoized(encoded(REPO))
    assert before == fresh(encoded(REPO))
    assert not has(before, code, resource)
    files = encoded(edit(REPO))
    after = validator.memoized(files)
    assert has(after, code, resource)
    assert after == fresh(files)
    assert validator.memoized(encoded(REPO)) == before  # and back


def test_dependent_edits_one_on_another_then_reverted_one_by_one() -> None:
    validator, revisions = Validator(), [REPO]
    for edit, _, _ in DEPENDENT_EDITS:
        revisions.append(edit(revisions[-1]))
    for files in revisions + revisions[::-1]:
        assert validator.memoized(encoded(files)) == fresh(encoded(files))


# Textual edits of the synthetic repo that change what other resources' findings say.
RANDOM_EDITS = (
    ("subset: v1", "subset: v9"),  # a VS's subset no rule defines
    ("name: v2", "name: v3"),  # a DestinationRule's subset
    ("number: 80\n", "number: 81\n"),  # a service's port
    ("version: v1", "version: v5"),  # an endpoint's labels
    ("number: 8080", "number: 8081"),  # a gateway's port
    ("- '*'", "- vs-1.example.test"),  # a gateway's hosts
    ("app: edge-0", "app: edge-9"),  # a fleet's or a gateway's selector
    ("host: svc-1.bench.internal", "host: svc-2.bench.internal"),  # a destination or a rule's host
    ("prefix: /probe/", "exact: /probe/"),  # a VS on its own
)


@pytest.mark.parametrize("seed", range(4))
def test_random_edits_validate_as_without_a_memo(seed: int) -> None:
    rng = random.Random(seed)
    files = generate(RepoShape(16, fleets=2, gateways_per_fleet=2, vs_per_service=4, routes_per_vs=4)).files()
    validator, history, codes = Validator(), [files], set()
    for _ in range(15):
        found = validator.memoized(files)
        assert found == fresh(files)
        codes.update(f.code for f in found)
        files = random_revision(rng, files, history, RANDOM_EDITS, copy_share=0.05, once_share=0.5)
        history.append(files)
    assert codes  # the edits did produce findings to compare


def test_every_golden_case_through_one_memo() -> None:
    validator = Validator()
    cases = sorted(GOLDEN.glob("*/manifests.yaml"))
    assert cases
    for manifest in cases + cases:
        files = {"manifests.yaml": manifest.read_bytes()}
        assert validator.memoized(files) == fresh(files)


def count_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    checked: list[str] = []
    check = ItemChecks.virtual_service

    def counting(self: ItemChecks, *args: object) -> object:
        checked.append(args[0].ref)  # type: ignore[attr-defined]
        return check(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ItemChecks, "virtual_service", counting)
    return checked


def test_only_what_an_edit_touches_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = generate(RepoShape(40))
    validator = Validator()
    validator.memoized(repo.files())
    checked = count_checks(monkeypatch)
    repo, vs = change_destination(repo, single_gateway_vs(repo, 3).index)
    validator.memoized(repo.files())
    assert checked == [f"{vs.namespace}/{vs.name}"]

    checked.clear()
    service = repo.services[1]
    files = repo.files()
    path = f"services/{service.name}.yaml"
    files[path] = files[path].replace(b"number: 80\n", b"number: 81\n")
    validator.memoized(files)
    readers = {
        f"{v.namespace}/{v.name}"
        for v in repo.virtual_services
        if any(d.host == service.host for rule in v.rules for d in rule.destinations)
    }
    assert readers and sorted(checked) == sorted(readers)


def test_items_no_build_of_the_latest_two_asked_for_are_dropped() -> None:
    files = generate(RepoShape(8)).files()
    validator = Validator()
    validator.memoized(files)
    full = len(validator.memo)
    gone = sorted(p for p in files if p.startswith("routes/"))[0]
    smaller = {p: b for p, b in files.items() if p != gone}
    validator.memoized(smaller)
    assert len(validator.memo) == full  # the previous revision may come back (a revert)
    validator.memoized(smaller)
    assert len(validator.memo) == full - 2  # that VirtualService's document and its cross-resource findings


def test_the_index_is_built_again_only_when_what_it_files_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    validator = Validator()
    validator.memoized(encoded(REPO))
    built: list[RepoIndex] = []
    index_of = RepoIndex.of

    def counted(*args: Any) -> RepoIndex:
        built.append(index_of(*args))
        return built[-1]

    monkeypatch.setattr(RepoIndex, "of", counted)
    edits = [
        (edited("shop.yaml", "prefix: /a", "prefix: /c"), False),  # a VirtualService's routes
        (edited("child.yaml", "app.internal", "app.internal, port: {number: 80}"), False),  # a delegate's
        (edited("child.yaml", "spec:\n", "spec:\n  hosts: [child.example.com]\n"), False),  # no delegate: patched
        (edited("gateway.yaml", "*.example.com", "*.example.org"), True),
    ]
    files = REPO
    for edit, indexed in edits:  # one on another
        files = edit(files)
        expected = fresh(encoded(files))
        built.clear()
        assert validator.memoized(encoded(files)) == expected
        assert len(built) == indexed


def test_merged_hosts_follow_an_edit_of_one_of_their_virtual_services() -> None:
    """The clashes on a host several VirtualServices route come from each server's shared hosts, kept while
    the server is the same object: an edit of one of those VirtualServices must show."""
    shared = {
        "fleet.yaml": documents(FLEET),
        "gateway.yaml": documents(gateway()),
        "service.yaml": documents(PLAIN_SERVICE),
        "a.yaml": documents(virtual_service("a", "shop.example.com")),
        "b.yaml": documents(virtual_service("b", "shop.example.com")),
    }
    validator = Validator()
    before = validator.memoized(encoded(shared))
    assert has(before, "unreachable-rule", "VirtualService default/b") and before == fresh(encoded(shared))
    narrower = virtual_service("b", "shop.example.com", f"{{match: [{{uri: {{prefix: /b}}}}], {TO_APP}}}")
    files = encoded({**shared, "b.yaml": documents(narrower)})
    after = validator.memoized(files)
    assert not has(after, "unreachable-rule", "VirtualService default/b") and after == fresh(files)


def test_a_build_cut_short_leaves_nothing_half_renewed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check that raises after the inputs' versions moved on must not leave findings computed from the old
    ones: the next build of the same files finds what a fresh validation finds."""
    validator = Validator()
    validator.memoized(encoded(REPO))
    files = encoded(edited("service.yaml", "ports: [", f"ports: [{SECOND_PORT}, ")(REPO))
    with monkeypatch.context() as patched:
        patched.setattr(ItemChecks, "virtual_service", lambda *args: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            validator.memoized(files)
    after = validator.memoized(files)
    assert has(after, "destination-port-required", CHILD_REF) and after == fresh(files)
