"""A LoadMemo kept across revisions loads exactly what `load_manifests` loads from scratch: the resources, the
findings in the same order and each kind's resources, through edits, additions, deletions, renames, files that
break or define a resource twice, lenient on and off, and revisions that change nothing. It parses only what
changed, and hands back the very same objects for what did not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.diagnostics import Finding
from reconciler.manifests import load_memo
from reconciler.manifests.load_memo import LoadMemo
from reconciler.manifests.loader import ManifestSet, load_file, load_manifests
from reconciler.manifests.model import SPEC_TYPES, Resource
from tests.unit.manifest_helpers import FLEET, SERVICE, destination_rule, documents, gateway, virtual_service

# What a file may hold: several kinds, several documents, the same resource as other files (or twice in
# itself), a field only lenient loading accepts, and files that do not load at all.
CONTENTS = (
    virtual_service("shop", "shop.example.com"),
    virtual_service("shop", "shop.example.org"),
    virtual_service("cart", "cart.example.com"),
    documents(virtual_service("cart", "cart.example.com"), destination_rule("app", "app.internal")),
    documents(virtual_service("shop", "a.example.com"), virtual_service("shop", "b.example.com")),
    documents(FLEET, gateway(), SERVICE),
    SERVICE,
    destination_rule("app", "app.internal"),
    virtual_service("shop", "shop.example.com").replace("  hosts:", "  surprise: 1\n  hosts:"),
    "kind: [\n",  # not YAML
    "apiVersion: v9\nkind: Pod\nmetadata: {name: p}\n",  # a kind gateways do not use
    "",
)
PATHS = ("a.yaml", "b.yml", "dir/c.yaml", "dir/sub/d.yaml", "z.yaml", ".github/ci.yml", "README.md", "x/.hidden/e.yaml")
Files = dict[str, bytes]
Edit = Callable[[Files, list[Files]], Files]


def write(path: str, content: int) -> Edit:
    return lambda files, _: {**files, path: CONTENTS[content].encode()}


def delete(path: str) -> Edit:
    return lambda files, _: {p: raw for p, raw in files.items() if p != path}


def rename(path: str, to: str) -> Edit:
    return lambda files, _: {**delete(path)(files, []), to: files[path]} if path in files else files


def reread(files: Files, _: list[Files]) -> Files:
    """The same content in new bytes objects, as a caller that reads the files anew."""
    return {path: bytes(bytearray(raw)) for path, raw in files.items()}


def reorder(files: Files, _: list[Files]) -> Files:
    return dict(reversed(files.items()))


def revert(files: Files, history: list[Files]) -> Files:
    return dict(history[-2]) if len(history) > 1 else files


paths = st.sampled_from(PATHS)
edits = st.one_of(
    st.builds(write, paths, st.integers(0, len(CONTENTS) - 1)),
    st.builds(delete, paths),
    st.builds(rename, paths, paths),
    st.sampled_from([reread, reorder, revert]),
)
# A revision: some edits (none: an unchanged revision) and whether it loads leniently (mostly not).
revisions = st.lists(st.tuples(st.lists(edits, max_size=3), st.sampled_from([False, False, False, True])), max_size=12)


@dataclass
class Loaded:
    files: Files
    lenient: bool
    manifests: ManifestSet


def assert_loads_as_from_scratch(cached: ManifestSet, files: Files, lenient: bool) -> None:
    fresh = load_manifests(files, lenient)
    assert cached.resources == fresh.resources
    assert cached.findings == fresh.findings
    for kind in SPEC_TYPES:
        assert cached.of_kind(kind) == fresh.of_kind(kind)


def assert_unchanged_files_keep_their_objects(last: Loaded, now: Loaded) -> None:
    """The daemon's later stages reuse their work by the identity of what the loader hands back."""
    if last.lenient != now.lenient:
        return
    for path, raw in now.files.items():
        if last.files.get(path) == raw:
            assert [id(r) for r in of_file(now.manifests, path)] == [id(r) for r in of_file(last.manifests, path)]
    for kind, group in now.manifests.kinds.items():
        unchanged = all(last.files.get(r.location.file) == now.files.get(r.location.file) for r in group)
        if unchanged and len(group) == len(last.manifests.kinds.get(kind, ())):
            assert group is last.manifests.kinds[kind]


def of_file(manifests: ManifestSet, path: str) -> list[Resource]:
    return [r for r in manifests.resources if r.location.file == path]


@pytest.mark.parametrize("in_place_edits", [0, 64])  # rebuilding every list, or editing it in place
@settings(max_examples=200, deadline=None)
@given(st.dictionaries(paths, st.integers(0, len(CONTENTS) - 1)), revisions)
def test_every_revision_loads_as_from_scratch(
    in_place_edits: int, start: dict[str, int], steps: list[tuple[list[Edit], bool]]
) -> None:
    with patch.object(load_memo._FileOrdered, "in_place_edits", in_place_edits):
        load_revisions(start, steps)


def load_revisions(start: dict[str, int], steps: list[tuple[list[Edit], bool]]) -> None:
    memo = LoadMemo()
    files = {path: CONTENTS[content].encode() for path, content in start.items()}
    history = [files]
    last: Loaded | None = None
    for step_edits, lenient in [([], False), *steps]:
        for edit in step_edits:
            files = edit(files, history)
        history.append(files)
        now = Loaded(dict(files), lenient, memo.load(files, lenient))
        assert_loads_as_from_scratch(now.manifests, files, lenient)
        if last is not None:
            assert_unchanged_files_keep_their_objects(last, now)
        last = now


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the memo parses."""
    seen: list[str] = []

    def counting(path: str, raw: bytes, lenient: bool) -> tuple[list[Resource], list[Finding]]:
        seen.append(path)
        return load_file(path, raw, lenient)

    monkeypatch.setattr("reconciler.manifests.load_memo.load_file", counting)
    return seen


def test_a_revision_parses_only_the_files_it_changed(parsed: list[str]) -> None:
    memo = LoadMemo()
    first = {f"vs{i}.yaml": virtual_service(f"vs{i}", f"vs{i}.example.com").encode() for i in range(20)}
    memo.load(first, False)
    assert len(parsed) == 20
    parsed.clear()
    second = {**first, "vs3.yaml": virtual_service("vs3", "other.example.com").encode(), "new.yaml": b""}
    del second["vs7.yaml"]
    memo.load(second, False)
    assert sorted(parsed) == ["new.yaml", "vs3.yaml"]
    parsed.clear()
    memo.load(first, False)  # back to the revision before: its files' results were kept
    memo.load(reread(first, []), False)  # the same content again, in other bytes objects
    assert parsed == []
    memo.load(first, True)  # lenient loading reads every file otherwise
    assert len(parsed) == 20


def test_results_the_latest_two_loads_did_not_use_are_dropped() -> None:
    memo = LoadMemo()
    files = {f"vs{i}.yaml": virtual_service(f"vs{i}", f"vs{i}.example.com").encode() for i in range(5)}
    memo.load(files, False)
    smaller = {path: raw for path, raw in files.items() if path != "vs0.yaml"}
    memo.load(smaller, False)
    assert len(memo) == 5  # vs0.yaml may come back (a revert)
    memo.load(smaller, False)
    assert len(memo) == 4
