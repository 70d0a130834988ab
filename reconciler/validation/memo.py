"""The cross-resource findings of every item, kept between builds while the item and what it read are the same.

An item's findings are kept under the item's identity (the loader and the resolve cache hand back the very
same objects for unchanged files) together with the version of every input the item's checks read. An input
is a name in the `RepoIndex` (a Gateway, a registry host, a delegate); its version changes whenever the name
stands for other objects. So editing a ServiceEntry recomputes exactly the VirtualServices whose destinations
name one of its hosts, and editing one VirtualService recomputes that one alone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from itertools import count
from typing import Generic, TypeVar

from reconciler.config.model import ResolvedVirtualService
from reconciler.diagnostics import Finding
from reconciler.manifests.model import Resource
from reconciler.memo import Memo, Same
from reconciler.validation.index import Document, InputName, RepoIndex
from reconciler.validation.item_checks import ItemChecks, VirtualServiceFindings, virtual_service_reads
from reconciler.validation.upstreams import destination_rule_read

V = TypeVar("V")
InputVersions = tuple[int | None, ...]  # None: the name stands for nothing in this build


class Versions:
    """A number per input name, renewed whenever the name stands for objects other than in the build before.

    Numbers are never reused, so an input with the same number in two builds stood for the same objects in
    every build between them. Only the names of the latest build are remembered. `generation` changes with
    any number, or when a name comes or goes: while it stays, every result is still valid without a look-up.
    """

    def __init__(self) -> None:
        self._known: dict[InputName, tuple[Hashable, int]] = {}
        self._numbers: dict[InputName, int] = {}
        self._counter = count(1)
        self.generation = 0

    def update(self, identities: Mapping[InputName, Hashable]) -> None:
        known = {}
        for name, identity in identities.items():
            before = self._known.get(name)
            known[name] = before if before is not None and before[0] == identity else (identity, next(self._counter))
        numbers = {name: number for name, (_, number) in known.items()}
        if numbers != self._numbers:
            self.generation = next(self._counter)
        self._known, self._numbers = known, numbers

    def of(self, names: Sequence[InputName]) -> InputVersions:
        return tuple(map(self._numbers.get, names))


class _Kept(Generic[V]):
    """One item's result, with the versions of the inputs it was computed from, as last confirmed."""

    __slots__ = ("_generation", "_reads", "_result", "item")

    def __init__(self, item: object, reads: Sequence[InputName]) -> None:
        self.item = item  # held, for tables keyed by the item's id (see ValidationMemo)
        self._reads = reads
        self._result: tuple[InputVersions, V] | None = None
        self._generation = -1

    def value(self, versions: Versions, compute: Callable[[], V]) -> V:
        if self._result is None or self._generation != versions.generation:
            now = versions.of(self._reads)
            if self._result is None or self._result[0] != now:
                self._result = (now, compute())
            self._generation = versions.generation
        return self._result[1]


class ValidationMemo(ItemChecks):
    """What a daemon keeps between builds and hands to every `validate`; results equal `ItemChecks`' exactly.

    The two tables with an entry per document and per VirtualService are keyed by `id(item)` rather than by
    `Same(item)`, whose hash and comparison run in Python (about 7 ms per build at 10k VirtualServices). It is
    as safe: each entry holds its item, so no other object can have that id while the entry exists.
    """

    def __init__(self) -> None:
        self._versions = Versions()
        self._documents: Memo[int, Document] = Memo()
        self._virtual_services: Memo[int, _Kept[VirtualServiceFindings]] = Memo()
        self._service_entries: Memo[Same, tuple[Finding, ...]] = Memo()
        # A rule's host is in the key: it decides what the rule reads (its domain suffix is not in the document).
        self._destination_rules: Memo[tuple[Same, str], _Kept[tuple[Finding, ...]]] = Memo()

    def start_build(self) -> None:
        for memo in (self._documents, self._virtual_services, self._service_entries, self._destination_rules):
            memo.age()

    def document(self, resource: Resource) -> Document:
        return self._documents.get(id(resource), lambda: ItemChecks.document(self, resource))

    def use_index(self, index: RepoIndex) -> None:
        self._versions.update(index.identities())

    def virtual_service(self, vs: ResolvedVirtualService, index: RepoIndex) -> VirtualServiceFindings:
        kept = self._virtual_services.get(id(vs), lambda: _Kept(vs, virtual_service_reads(vs)))
        return kept.value(self._versions, lambda: ItemChecks.virtual_service(self, vs, index))

    def service_entry(self, entry: Resource) -> tuple[Finding, ...]:
        return self._service_entries.get(Same(entry), lambda: ItemChecks.service_entry(self, entry))

    def destination_rule(self, rule: Resource, index: RepoIndex) -> tuple[Finding, ...]:
        host = index.merged_rule(rule).host
        kept = self._destination_rules.get((Same(rule), host), lambda: _Kept(rule, destination_rule_read(host)))
        return kept.value(self._versions, lambda: ItemChecks.destination_rule(self, rule, index))

    def __len__(self) -> int:
        """How many items' findings are kept."""
        tables = (self._documents, self._virtual_services, self._service_entries, self._destination_rules)
        return sum(len(table) for table in tables)
