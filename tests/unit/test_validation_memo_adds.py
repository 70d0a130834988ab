"""Adding or removing a VirtualService patches what validation keeps instead of building it again: the findings
stay exactly those of a validation without a memo (host clashes between VirtualServices, delegates, gateway
references), and only the documents and VirtualServices that came are checked."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

import pytest

from reconciler.config.model import BoundServer, ResolvedVirtualService
from reconciler.config.resolve import resolve
from reconciler.diagnostics import Finding
from reconciler.manifests.loader import load_manifests
from reconciler.memo import CarriedResults
from reconciler.pipeline import build
from reconciler.pipeline_cache import BuildCache
from reconciler.validation.analysis import VirtualHost, shared_virtual_hosts
from reconciler.validation.index import RepoIndex
from reconciler.validation.item_checks import ItemChecks
from reconciler.validation.memo import FindingsTable, KeptSharedHosts
from tests.unit.manifest_helpers import FLEET, SERVICE, TO_APP, documents, gateway, http_server, virtual_service
from tests.unit.test_validation_memo import Validator, fresh

Files = dict[str, bytes]
Revision = Callable[[Files], Files]
HTTP_ALT = '{port: {number: 8080, name: http-alt, protocol: HTTP}, hosts: ["*"]}'
REPO: Files = {
    "fleet.yaml": documents(FLEET).encode(),
    "gateway.yaml": documents(gateway(http_server(80), HTTP_ALT)).encode(),
    "service.yaml": documents(SERVICE).encode(),
    **{
        f"routes/vs-{n:02}.yaml": documents(virtual_service(f"vs-{n:02}", f"vs-{n:02}.example.com")).encode()
        for n in range(12)
    },
}
CHILD = virtual_service("child", "", gateways=None)  # without hosts: a delegate
NARROW = f"{{match: [{{uri: {{prefix: /narrow}}}}], {TO_APP}}}"


def added(path: str, *docs: str) -> Revision:
    return lambda files: {**files, path: documents(*docs).encode()}


def removed(path: str) -> Revision:
    return lambda files: {p: text for p, text in files.items() if p != path}


class Expect(NamedTuple):
    """A finding a revision must bring (or take away): its code, the VirtualService it names, words of its message."""

    code: str
    name: str
    words: str = ""
    present: bool = True

    def met_by(self, findings: list[Finding]) -> bool:
        named = f"VirtualService default/{self.name}"
        found = any(f.code == self.code and f.resource == named and self.words in f.message for f in findings)
        return found == self.present


CATCH_ALL_HIDDEN = Expect("unreachable-rule", "vs-05")  # another VS's catch-all on the host is merged first
# Each revision on the one before.
REVISIONS: list[tuple[Revision, Expect]] = [
    (added("routes/vs-05-clash.yaml", virtual_service("clash", "vs-05.example.com")), CATCH_ALL_HIDDEN),
    # a third VS on that host, filed before every other document: every position after it moves
    (added("aa.yaml", virtual_service("aa", "vs-05.example.com", NARROW)), Expect("vs-host-conflict", "vs-05", "by 3")),
    (removed("routes/vs-05-clash.yaml"), CATCH_ALL_HIDDEN._replace(present=False)),
    (removed("routes/vs-00.yaml"), Expect("vs-host-conflict", "vs-05", "by 2")),
    # a VS whose delegate does not exist, then the delegate (which the index files)
    (
        added("routes/vs-03-parent.yaml", virtual_service("parent", "parent.example.com", "{delegate: {name: child}}")),
        Expect("delegate-not-found", "parent"),
    ),
    (added("routes/vs-03-child.yaml", CHILD), Expect("delegate-not-found", "parent", present=False)),
    # the same delegate twice: it is there until both are gone
    (added("routes/vs-03-child-copy.yaml", CHILD), Expect("delegate-not-found", "parent", present=False)),
    (removed("routes/vs-03-child.yaml"), Expect("delegate-not-found", "parent", present=False)),
    (removed("routes/vs-03-child-copy.yaml"), Expect("delegate-not-found", "parent")),
    (
        added("routes/zz.yaml", virtual_service("zz", "zz.example.com", gateways="[missing]")),
        Expect("gateway-not-found", "zz"),
    ),
    # the same VirtualService twice
    (
        added("routes/vs-01-copy.yaml", virtual_service("vs-01", "vs-01.example.com")),
        Expect("unreachable-rule", "vs-01"),
    ),
    (removed("routes/vs-01-copy.yaml"), Expect("unreachable-rule", "vs-01", present=False)),
    (removed("aa.yaml"), Expect("vs-host-conflict", "vs-05", present=False)),
]


def revisions() -> list[Files]:
    files = [REPO]
    for revise, _ in REVISIONS:
        files.append(revise(files[-1]))
    return files


def test_adds_and_removals_one_on_another_then_back_validate_as_without_a_memo() -> None:
    validator, history = Validator(), revisions()
    assert validator.memoized(REPO) == fresh(REPO)
    for files, (_, expect) in zip(history[1:], REVISIONS, strict=True):
        found = validator.memoized(files)
        assert expect.met_by(found), expect
        assert found == fresh(files)
    for files in history[::-1]:  # reverts find what earlier builds kept
        assert validator.memoized(files) == fresh(files)


def test_builds_through_adds_and_removals_find_what_a_build_without_a_cache_finds() -> None:
    cache = BuildCache()
    for files in revisions() + revisions()[::-1]:
        assert build(files, cache=cache).findings == build(files).findings


def counted(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, key: Callable[..., str]) -> list[str]:
    calls: list[str] = []
    original = getattr(owner, name)

    def counting(*args: Any) -> Any:
        calls.append(key(*args))
        return original(*args)

    monkeypatch.setattr(owner, name, counting)
    return calls


def test_only_what_came_is_checked_and_the_index_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    validator = Validator()
    validator.memoized(REPO)
    documents_checked = counted(monkeypatch, ItemChecks, "document", lambda _, resource: resource.name)
    checked = counted(monkeypatch, ItemChecks, "virtual_service", lambda _, vs, index: vs.resource.name)
    indexed = counted(monkeypatch, RepoIndex, "of", lambda documents, config: "index")

    def checks_of(files: Files) -> tuple[list[str], list[str], int]:
        expected = fresh(files)
        for calls in (documents_checked, checked, indexed):
            calls.clear()
        assert validator.memoized(files) == expected
        return documents_checked, checked, len(indexed)

    files = added("routes/vs-05-clash.yaml", virtual_service("clash", "vs-05.example.com"))(REPO)
    assert checks_of(files) == (["clash"], ["clash"], 0)
    files = removed("routes/vs-02.yaml")(files)
    assert checks_of(files) == ([], [], 0)
    # a delegate the index names: what reads that name is checked again, and the index is patched
    parent = virtual_service("parent", "parent.example.com", "{delegate: {name: child}}")
    files = added("routes/vs-03-parent.yaml", parent)(files)
    assert checks_of(files) == (["parent"], ["parent"], 0)
    files = added("routes/vs-03-child.yaml", CHILD)(files)
    assert checks_of(files) == (["child"], ["child", "parent"], 0)
    files = removed("routes/vs-03-child.yaml")(files)
    assert checks_of(files) == ([], ["parent"], 0)
    # a Gateway is filed by the index: that is built again
    files = added("gateway-2.yaml", gateway(name="gw2"))(files)
    assert checks_of(files) == (["gw2"], [], 1)


class Result:
    def __init__(self, item: object, findings: bool) -> None:
        self.item, self.findings = item, findings


def test_a_findings_table_lists_the_results_with_findings_through_adds_and_removals() -> None:
    rng = random.Random(7)
    table: FindingsTable[object, Result] = FindingsTable(lambda result: result.findings)
    items: list[object] = []
    with_findings: dict[int, bool] = {}

    def refresh(item: object, kept: Result | None) -> Result:
        return kept if kept is not None else Result(item, with_findings[id(item)])

    for _ in range(200):
        at = rng.randrange(len(items) + 1)
        if items and rng.random() < 0.4:
            del items[at : at + rng.randrange(1, 3)]
        else:
            new = [object() for _ in range(rng.randrange(1, 3))]
            with_findings.update((id(item), rng.random() < 0.3) for item in new)
            items[at:at] = new
        table.update(items, refresh)
        assert [result.item for result in table.results] == items
        assert table.with_findings() == [result for result in table.results if result.findings]


def test_an_add_or_a_removal_tells_where_and_computes_only_what_came() -> None:
    first = [object() for _ in range(20)]
    carried: CarriedResults[object, str] = CarriedResults()
    computed: list[object] = []

    def refresh(item: object, kept: str | None) -> str:
        computed.append(item)
        return kept or f"result {id(item)}"

    carried.update(first, refresh)
    new = object()
    computed.clear()
    changes = carried.update([*first[:7], new, *first[7:]], refresh)
    assert computed == [new]
    assert (list(changes.dropped), list(changes.positions), changes.shifted_from, changes.shift) == ([], [7], 7, 1)
    results = carried.results[3:8]
    changes = carried.update(first[:3] + first[4:], refresh)
    assert computed == [new]  # nothing more: the items between the removed one and `new` moved, found by id
    assert (list(changes.dropped), changes.replaced, list(changes.positions)) == ([3, 4, 5, 6, 7], results, [3, 4, 5])


def bound_server() -> BoundServer:
    config = resolve(load_manifests(REPO))
    return next(iter(config.fleets.values())).servers[0]


def test_shared_hosts_renewed_through_random_changes_are_those_of_the_server() -> None:
    rng = random.Random(3)
    bound = bound_server()
    one = bound.virtual_hosts[0][1]
    two = (*one, *one)
    kept = KeptSharedHosts.of(bound)
    virtual_hosts: list[VirtualHost] = list(bound.virtual_hosts)
    for step in range(150):
        at = rng.randrange(len(virtual_hosts) + 1)
        if virtual_hosts and rng.random() < 0.4:
            del virtual_hosts[at : at + rng.randrange(1, 4)]
        else:
            routed: tuple[ResolvedVirtualService, ...] = two if rng.random() < 0.4 else one
            virtual_hosts[at : at + rng.randrange(2)] = [(f"h{step}.example.com", routed)]
        bound = replace(bound, virtual_hosts=tuple(virtual_hosts))
        kept = kept.renewed(bound)
        assert kept.hosts == shared_virtual_hosts(bound)
