"""The findings of every item, carried from build to build while the item and what it read are the same.

An item's findings are kept with the item (the loader and the resolve cache hand back the very same objects
for unchanged files) together with the version of every input the item's checks read. An input is a name in
the `RepoIndex` (a Gateway, a registry host, a delegate); its version changes whenever the name stands for
other objects. So editing a ServiceEntry recomputes exactly the VirtualServices whose destinations name one
of its hosts, and editing one VirtualService recomputes that one alone.

Matching a build's items with the latest build's is done in batch at C speed (`CarriedResults`), and the
index is kept whole while only documents it does not file changed, came or went: a one-VirtualService edit,
add or removal then costs a pass over the documents and the VirtualServices at C speed, plus the checks of
that one VirtualService. What is kept by position (the items with findings, each server's shared hosts) is
patched where the positions moved, so an add or a removal does not make it start over.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain, compress, count
from typing import Any, Generic, TypeVar

from reconciler.config.model import BoundServer, ResolvedConfig, ResolvedVirtualService
from reconciler.diagnostics import Finding
from reconciler.manifests.model import Resource
from reconciler.memo import CarriedResults, Changes, differing_span
from reconciler.validation.analysis import VirtualHost, may_share_hosts, routed_by_several
from reconciler.validation.index import Document, InputName, RepoIndex, delegates_of, unfiled
from reconciler.validation.item_checks import Found, ItemChecks, VirtualServiceFindings, virtual_service_reads
from reconciler.validation.references import check_gateway_fleets
from reconciler.validation.upstreams import destination_rule_read

T = TypeVar("T")
V = TypeVar("V")
InputVersions = tuple[int | None, ...]  # None: the name stands for nothing in this build
Refresh = Callable[[T, V | None], V]  # (item, its result as kept, if any) → its result now
_READS = operator.attrgetter("reads")


class Versions:
    """A number per input name, renewed whenever the name stands for objects other than in the build before.

    Numbers are never reused, so an input with the same number in two builds stood for the same objects in
    every build between them. Only the names of the latest build are remembered.
    """

    def __init__(self) -> None:
        self._known: dict[InputName, tuple[Hashable, int]] = {}
        self._numbers: dict[InputName, int] = {}
        self._counter = count(1)

    def update(self, identities: Mapping[InputName, Hashable]) -> frozenset[InputName]:
        """This build's identities; returns the names whose number changed, came or went."""
        known = {name: self._versioned(name, identity) for name, identity in identities.items()}
        numbers = {name: number for name, (_, number) in known.items()}
        changed = frozenset(name for name, _ in numbers.items() ^ self._numbers.items())
        self._known, self._numbers = known, numbers
        return changed

    def renew(self, identities: Mapping[InputName, Hashable | None]) -> frozenset[InputName]:
        """`update` when only the names of `identities` may have changed (None: the name stands for nothing)."""
        changed = set()
        for name, identity in identities.items():
            before = self._numbers.get(name)
            if identity is None:
                self._known.pop(name, None)
                self._numbers.pop(name, None)
            else:
                self._known[name] = versioned = self._versioned(name, identity)
                self._numbers[name] = versioned[1]
            if self._numbers.get(name) != before:
                changed.add(name)
        return frozenset(changed)

    def _versioned(self, name: InputName, identity: Hashable) -> tuple[Hashable, int]:
        before = self._known.get(name)
        return before if before is not None and before[0] == identity else (identity, next(self._counter))

    def of(self, names: Sequence[InputName]) -> InputVersions:
        return tuple(map(self._numbers.get, names))


@dataclass(frozen=True, slots=True)
class Kept(Generic[V]):
    """One item's result, with the inputs it read and their versions when it was computed."""

    reads: tuple[InputName, ...]
    versions: InputVersions
    value: V
    found: bool  # whether `value` holds findings, read at C speed (`FindingsTable`)


class FindingsTable(Generic[T, V]):
    """Results carried per item (`CarriedResults`), and the positions of those with findings: listing a build's
    findings then costs what the findings are, not what the items are."""

    def __init__(self, findings_of: Callable[[V], object]) -> None:
        self._carried: CarriedResults[T, V] = CarriedResults()
        self._findings_of = findings_of  # true when the result has findings
        self._with_findings: set[int] = set()

    @property
    def results(self) -> list[V]:
        return self._carried.results

    def update(self, items: Sequence[T], refresh: Refresh[T, V]) -> Changes[V]:
        """`CarriedResults.update`."""
        changes = self._carried.update(items, refresh)
        found = self._with_findings
        found.difference_update(changes.dropped)
        if changes.shift:  # at C speed too: every item may have findings
            moved = set(filter(changes.shifted_from.__le__, found))
            found -= moved
            found.update(map(changes.shift.__add__, moved))
        self._note(changes.positions)
        return changes

    def refresh_at(self, positions: Sequence[int], refresh: Refresh[T, V]) -> None:
        self._carried.refresh_at(positions, refresh)
        self._note(positions)

    def with_findings(self) -> list[V]:
        """The results that have findings, in the items' order."""
        results = self.results
        return [results[i] for i in sorted(self._with_findings)]

    def _note(self, positions: Sequence[int]) -> None:
        """At C speed: `positions` may be every item's (the first build, or one that changed most of them)."""
        results = self.results
        self._with_findings.difference_update(positions)
        self._with_findings.update(compress(positions, map(self._findings_of, map(results.__getitem__, positions))))

    def __len__(self) -> int:
        return len(self._carried)


@dataclass(frozen=True, slots=True)
class KeptSharedHosts:
    """`shared_virtual_hosts` of a bound server, with their positions among its virtual hosts."""

    bound: BoundServer
    positions: list[int]
    hosts: tuple[VirtualHost, ...]

    @classmethod
    def of(cls, bound: BoundServer) -> KeptSharedHosts:
        shared = routed_by_several(bound.virtual_hosts) if may_share_hosts(bound) else ()
        return cls.at(bound, list(compress(count(), shared)))

    @classmethod
    def at(cls, bound: BoundServer, positions: list[int]) -> KeptSharedHosts:
        return cls(bound, positions, tuple(map(bound.virtual_hosts.__getitem__, positions)))

    def renewed(self, bound: BoundServer) -> KeptSharedHosts:
        """Those of `bound`, which binds the same Gateway server: only where its virtual hosts are other objects
        (a VirtualService added to, removed from or changed on some hosts) are they looked at."""
        if not may_share_hosts(bound):
            return KeptSharedHosts.at(bound, [])
        virtual_hosts, positions = bound.virtual_hosts, self.positions
        start, stop_before, stop = differing_span(virtual_hosts, self.bound.virtual_hosts)
        after = bisect_left(positions, stop_before)
        return KeptSharedHosts.at(
            bound,
            [
                *positions[: bisect_left(positions, start)],
                *compress(range(start, stop), routed_by_several(virtual_hosts[start:stop])),
                *map((stop - stop_before).__add__, positions[after:]),
            ],
        )


_SharedHostsTable = tuple[dict[int, KeptSharedHosts], dict[int, KeptSharedHosts]]


class ValidationMemo(ItemChecks):
    """What a daemon keeps between builds and hands to every `validate`; results equal `ItemChecks`' exactly."""

    def __init__(self) -> None:
        self._forget()

    def _forget(self) -> None:
        self._versions = Versions()
        self._documents: FindingsTable[Resource, Document] = FindingsTable(operator.attrgetter("findings"))
        self._virtual_services: FindingsTable[ResolvedVirtualService, Kept[VirtualServiceFindings]] = FindingsTable(
            operator.attrgetter("found")
        )
        self._service_entries: CarriedResults[Resource, tuple[Finding, ...]] = CarriedResults()
        self._destination_rules: CarriedResults[Resource, Kept[tuple[Finding, ...]]] = CarriedResults()
        self._index: RepoIndex | None = None  # the latest build's
        # The findings of the Gateways (as to fleets), ServiceEntries and DestinationRules of that index
        self._index_findings: tuple[list[Finding], list[Finding], list[Finding]] = ([], [], [])
        # The shared hosts of the latest build's servers and of this one's, by id(bound server), and by id of the
        # Gateway's server they bind. Only the latest build's: resolve hands back the very same bound server while
        # none of its VirtualServices changed, and another one whose virtual hosts are mostly the same objects.
        self._shared_hosts: _SharedHostsTable = ({}, {})
        self._shared_hosts_now: _SharedHostsTable = ({}, {})

    def check(self, resources: Sequence[Resource], config: ResolvedConfig) -> Found:
        try:
            return self._check(resources, config)
        except BaseException:
            self._forget()  # a build cut short leaves tables of different builds: none can be trusted
            raise

    def shared_hosts(self, bound: BoundServer) -> tuple[VirtualHost, ...]:
        by_bound, by_server = self._shared_hosts
        kept = by_bound.get(id(bound))
        if kept is None:
            latest = by_server.get(id(bound.server))
            kept = latest.renewed(bound) if latest is not None else KeptSharedHosts.of(bound)
        now_by_bound, now_by_server = self._shared_hosts_now
        now_by_bound[id(bound)] = now_by_server[id(bound.server)] = kept
        return kept.hosts

    def _check(self, resources: Sequence[Resource], config: ResolvedConfig) -> Found:
        self._shared_hosts, self._shared_hosts_now = self._shared_hosts_now, ({}, {})
        changes = self._documents.update(resources, _kept_or(self.document))
        index, stale = self._renew_index(config, changes)
        _carry(self._virtual_services, config.virtual_services, partial(self._virtual_service, index), stale)
        return Found(
            chain.from_iterable(document.findings for document in self._documents.with_findings()),
            [kept.value for kept in self._virtual_services.with_findings()],
            *self._index_findings,
        )

    def _renew_index(
        self, config: ResolvedConfig, changes: Changes[Document]
    ) -> tuple[RepoIndex, frozenset[InputName]]:
        """This build's index, and the input names whose version changed. The latest build's index is patched
        while resolve hands back the very same services and destination rules and only documents it does not
        file came or went (some of them delegates, which it names)."""
        index, gone = self._index, changes.replaced
        came = list(map(self._documents.results.__getitem__, changes.positions))
        if (
            index is not None
            and index.services is config.services
            and index.destination_rules is config.destination_rules
            and unfiled(gone)
            and unfiled(came)
        ):
            delegates_gone, delegates_came = delegates_of(gone), delegates_of(came)
            if delegates_gone == delegates_came:
                return index, frozenset()
            self._index, moved = index.with_delegates(delegates_gone, delegates_came)
            return self._index, self._versions.renew(self._index.delegate_identities(moved))
        self._index = index = RepoIndex.of(self._documents.results, config)
        stale = self._versions.update(index.identities())
        self._check_index(index, stale)
        return index, stale

    def _check_index(self, index: RepoIndex, stale: frozenset[InputName]) -> None:
        """The findings of the index and of the items it files, kept with it."""
        self._service_entries.update(index.service_entries, _kept_or(self.service_entry))
        _carry(self._destination_rules, index.rule_documents, partial(self._destination_rule, index), stale)
        self._index_findings = (
            check_gateway_fleets(index),
            list(chain.from_iterable(self._service_entries.results)),
            list(chain.from_iterable(kept.value for kept in self._destination_rules.results)),
        )

    def _virtual_service(
        self, index: RepoIndex, vs: ResolvedVirtualService, kept: Kept[VirtualServiceFindings] | None
    ) -> Kept[VirtualServiceFindings]:
        if kept is not None and self._holds(kept):
            return kept
        return self._computed(virtual_service_reads(vs), lambda: self.virtual_service(vs, index))

    def _destination_rule(
        self, index: RepoIndex, rule: Resource, kept: Kept[tuple[Finding, ...]] | None
    ) -> Kept[tuple[Finding, ...]]:
        if kept is not None and self._holds(kept):
            return kept
        reads = destination_rule_read(index.merged_rule(rule).host)
        return self._computed(reads, lambda: self.destination_rule(rule, index))

    def _holds(self, kept: Kept[Any]) -> bool:
        return kept.versions == self._versions.of(kept.reads)

    def _computed(self, reads: tuple[InputName, ...], compute: Callable[[], V]) -> Kept[V]:
        value = compute()
        return Kept(reads, self._versions.of(reads), value, bool(value))

    def __len__(self) -> int:
        """How many items' findings are kept."""
        tables = (self._documents, self._virtual_services, self._service_entries, self._destination_rules)
        return sum(len(table) for table in tables)


def _kept_or(compute: Callable[[T], V]) -> Refresh[T, V]:
    """The refresh of a result that reads nothing but its item: kept while there is one."""
    return lambda item, kept: kept if kept is not None else compute(item)


def _carry(
    table: FindingsTable[T, Kept[V]] | CarriedResults[T, Kept[V]],
    items: Sequence[T],
    refresh: Refresh[T, Kept[V]],
    stale: frozenset[InputName],
) -> None:
    """Carry the latest build's results over to this build's items, and renew those that read an input whose
    version changed (`stale`)."""
    carried = bool(table.results)  # else every result is new, and up to date
    table.update(items, refresh)
    if stale and carried:
        kept = table.results
        # At C speed: after an edit of a Gateway or a ServiceEntry, every item is asked whether it read it.
        reading = compress(range(len(kept)), map(operator.not_, map(stale.isdisjoint, map(_READS, kept))))
        table.refresh_at(list(reading), refresh)
