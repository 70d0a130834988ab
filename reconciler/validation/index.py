"""What the cross-resource checks look up, indexed once per build, and the names those look-ups go by.

A check that reads another resource reads it through this index, by name: a Gateway by `namespace/name`, a
registry host (its ServiceEntry and merged DestinationRule together) by host, a delegate by `namespace/name`.
`identities` says, per name, which objects it stands for in this build, so a result that read some names can
be kept (`validation.memo`) exactly while those names stand for the same objects.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

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


INDEXED_KINDS = ("Gateway", "Fleet", "ServiceEntry", "DestinationRule")  # the kinds the index files by kind


@dataclass(frozen=True, slots=True)
class Document:
    """What validation keeps of one manifest document: its own findings, and how the index files it."""

    resource: Resource
    kind: str
    findings: tuple[Finding, ...]  # the rules that read this document alone (`rules.check_resource`)
    delegate: str | None  # namespace/name of a VirtualService without hosts, which others may delegate to


def filed_alike(before: Document, after: Document) -> bool:
    """Whether an index built with `after` in place of `before` is the same (kinds it files nowhere, the same
    delegate name or none), given the same resolved services and destination rules."""
    return before.kind not in INDEXED_KINDS and after.kind not in INDEXED_KINDS and before.delegate == after.delegate


@dataclass(frozen=True)
class RepoIndex:
    gateways: dict[str, Resource]  # namespace/name → Gateway (the last of same-named ones, as a dict keeps it)
    fleets: tuple[Resource, ...]
    service_entries: tuple[Resource, ...]
    rule_documents: tuple[Resource, ...]  # every DestinationRule, in the order resolve merges them
    services: dict[str, Service]
    destination_rules: dict[str, ResolvedDestinationRule]
    delegates: frozenset[str]  # namespace/name of every VirtualService without hosts
    # id of each DestinationRule document → the merged rule it is part of. Ids are safe here: each merged rule
    # holds its documents, so no other object can have their ids while the index lives.
    _merged_rules: dict[int, ResolvedDestinationRule]

    @classmethod
    def of(cls, documents: Iterable[Document], config: ResolvedConfig) -> RepoIndex:
        # One pass over the documents' kept `Document`s, not over the Resources: at 10k documents every
        # attribute read on objects spread over the heap counts, and these are the few kinds looked up.
        filed: dict[str, list[Resource]] = {kind: [] for kind in INDEXED_KINDS}
        delegates: set[str] = set()
        for document in documents:
            kind = filed.get(document.kind)
            if kind is not None:
                kind.append(document.resource)
            elif document.delegate is not None:
                delegates.add(document.delegate)
        return cls(
            gateways={f"{g.namespace}/{g.name}": g for g in filed["Gateway"]},
            fleets=tuple(filed["Fleet"]),
            service_entries=tuple(filed["ServiceEntry"]),
            rule_documents=tuple(sorted(filed["DestinationRule"], key=lambda r: (r.name, r.namespace))),
            services=config.services,
            destination_rules=config.destination_rules,
            delegates=frozenset(delegates),
            _merged_rules={id(s): rule for rule in config.destination_rules.values() for s in rule.sources},
        )

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
        found.update((delegate_input(ref), True) for ref in self.delegates)
        found[SERVICE_HOSTS] = frozenset(self.services)
        return found
