"""What the cross-resource checks look up, indexed per build, and the names those look-ups go by.

A check that reads another resource reads it through this index, by name: a Gateway by `namespace/name`, a
registry host (its ServiceEntry and merged DestinationRule together) by host, a delegate by `namespace/name`.
`identities` says, per name, which objects it stands for in this build, so a result that read some names can
be kept (`validation.memo`) exactly while those names stand for the same objects.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace

from reconciler.config import hosts
from reconciler.config.model import ResolvedConfig, ResolvedDestinationRule, Service
from reconciler.diagnostics import Finding
from reconciler.manifests.model import Resource
from reconciler.memo import Same

InputName = tuple[str, ...]  # ("gateway", ref) | ("host", host) | ("delegate", ref) | SERVICE_HOSTS
SERVICE_HOSTS: InputName = ("service-hosts",)  # the set of registry hosts, which a wildcard host is matched against


def gateway_input(ref: str) -> InputName:
    return ("gateway", ref)


def host_input(host: str) -> InputName:
    return ("host", host)


def delegate_input(ref: str) -> InputName:
    return ("delegate", ref)


INDEXED_KINDS = frozenset({"Gateway", "Fleet", "ServiceEntry", "DestinationRule"})  # the kinds the index files by kind
_KIND, _DELEGATE = operator.attrgetter("kind"), operator.attrgetter("delegate")


@dataclass(frozen=True, slots=True)
class Document:
    """What validation keeps of one manifest document: its own findings, and how the index files it."""

    resource: Resource
    kind: str
    findings: tuple[Finding, ...]  # the rules that read this document alone (`rules.check_resource`)
    delegate: str | None  # namespace/name of a VirtualService without hosts, which others may delegate to


def unfiled(documents: Iterable[Document]) -> bool:
    """Whether the index files none of `documents` by kind (it may still name them as delegates)."""
    return INDEXED_KINDS.isdisjoint(map(_KIND, documents))


def delegates_of(documents: Iterable[Document]) -> list[str]:
    """The delegates `documents` name, sorted."""
    return sorted(filter(None, map(_DELEGATE, documents)))


@dataclass(frozen=True)
class RepoIndex:
    gateways: dict[str, Resource]  # namespace/name → Gateway (the last of same-named ones, as a dict keeps it)
    fleets: tuple[Resource, ...]
    service_entries: tuple[Resource, ...]
    rule_documents: tuple[Resource, ...]  # every DestinationRule, in the order resolve merges them
    services: dict[str, Service]
    destination_rules: dict[str, ResolvedDestinationRule]
    delegates: frozenset[str]  # namespace/name of every VirtualService without hosts
    _delegate_counts: Counter[str]  # how many documents name each (a name may be taken twice)
    # id of each DestinationRule document → the merged rule it is part of. Ids are safe here: each merged rule
    # holds its documents, so no other object can have their ids while the index lives.
    _merged_rules: dict[int, ResolvedDestinationRule]

    @classmethod
    def of(cls, documents: Iterable[Document], config: ResolvedConfig) -> RepoIndex:
        # One pass over the documents' kept `Document`s, not over the Resources: at 10k documents every
        # attribute read on objects spread over the heap counts, and these are the few kinds looked up.
        filed: dict[str, list[Resource]] = {kind: [] for kind in INDEXED_KINDS}
        delegates: Counter[str] = Counter()
        for document in documents:
            kind = filed.get(document.kind)
            if kind is not None:
                kind.append(document.resource)
            elif document.delegate is not None:
                delegates[document.delegate] += 1
        return cls(
            gateways={f"{g.namespace}/{g.name}": g for g in filed["Gateway"]},
            fleets=tuple(filed["Fleet"]),
            service_entries=tuple(filed["ServiceEntry"]),
            rule_documents=tuple(sorted(filed["DestinationRule"], key=lambda r: (r.name, r.namespace))),
            services=config.services,
            destination_rules=config.destination_rules,
            delegates=frozenset(delegates),
            _delegate_counts=delegates,
            _merged_rules={id(s): rule for rule in config.destination_rules.values() for s in rule.sources},
        )

    def with_delegates(self, gone: Iterable[str], came: Iterable[str]) -> tuple[RepoIndex, frozenset[str]]:
        """This index once documents naming the delegates `gone` went and ones naming those that `came` came,
        and the names that came or went."""
        counts = Counter(self._delegate_counts)
        counts.subtract(gone)
        counts.update(came)
        counts = +counts  # without the names no document takes any more
        delegates = frozenset(counts)
        return replace(self, delegates=delegates, _delegate_counts=counts), delegates ^ self.delegates

    def delegate_identities(self, refs: Iterable[str]) -> dict[InputName, Hashable | None]:
        """`identities` of these delegate names: None for a name that stands for nothing."""
        return {delegate_input(ref): True if ref in self.delegates else None for ref in refs}

    def merged_rule(self, rule: Resource) -> ResolvedDestinationRule:
        """The merged rule a DestinationRule document is part of (resolve merges every one by host)."""
        return self._merged_rules[id(rule)]

    def has_service_under(self, host: str) -> bool:
        """Whether the registry declares `host` or, for a wildcard, any host it covers."""
        if not hosts.is_wildcard(host):  # only a wildcard has subsets other than itself
            return host in self.services
        return any(hosts.subset_of(h, host) for h in self.services)

    def identities(self) -> dict[InputName, Hashable]:
        """Per name, what it stands for in this build: equal identities mean equal answers to every look-up."""
        found: dict[InputName, Hashable] = {gateway_input(ref): Same(g) for ref, g in self.gateways.items()}
        for host in self.services.keys() | self.destination_rules.keys():
            service, rule = self.services.get(host), self.destination_rules.get(host)
            # A Service is built from its host and its ServiceEntry alone; a merged rule from its sources in order.
            found[host_input(host)] = (
                Same(service.source) if service else None,
                tuple(Same(s) for s in rule.sources) if rule else None,
            )
        found.update(self.delegate_identities(self.delegates))
        found[SERVICE_HOSTS] = frozenset(self.services)
        return found
