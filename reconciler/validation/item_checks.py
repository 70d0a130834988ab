"""The cross-resource checks, item by item, and what each item's checks read besides the item itself.

Every whole-repo check is, for one VirtualService, ServiceEntry or DestinationRule, a function of that item
and of a few inputs looked up by name in the `RepoIndex`. Computing them item by item (`ItemChecks`) is
what lets `ValidationMemo` keep an item's findings while the item and the inputs it names stay the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

from reconciler.config.model import BoundServer, ResolvedConfig, ResolvedVirtualService
from reconciler.diagnostics import Finding
from reconciler.manifests.model import Resource
from reconciler.validation.analysis import (
    VirtualHost,
    bindings_read,
    check_bindings,
    check_delegates,
    delegates_read,
    shared_virtual_hosts,
)
from reconciler.validation.index import Document, InputName, RepoIndex
from reconciler.validation.references import check_gateway_fleets, check_references, references_read
from reconciler.validation.route_checks import check_http_routes
from reconciler.validation.rules import check_resource
from reconciler.validation.upstreams import check_destination_rule, check_service_entry


@dataclass(frozen=True)
class VirtualServiceFindings:
    """One VirtualService's findings, check by check, so `validate` can list them in the order of the checks."""

    references: tuple[Finding, ...]
    bindings: tuple[Finding, ...]
    delegates: tuple[Finding, ...]
    routes: tuple[Finding, ...]

    def __bool__(self) -> bool:
        return bool(self.references or self.bindings or self.delegates or self.routes)


@dataclass(frozen=True)
class Found:
    """What the item checks of one build found, check by check, each in the order of its items."""

    documents: Iterable[Finding]
    virtual_services: Sequence[VirtualServiceFindings]  # those without findings may be left out
    gateway_fleets: Iterable[Finding]
    service_entries: Iterable[Finding]
    destination_rules: Iterable[Finding]


def virtual_service_reads(vs: ResolvedVirtualService) -> tuple[InputName, ...]:
    """Every name `ItemChecks.virtual_service` looks up in the index (route checks read only the VS)."""
    return tuple(dict.fromkeys(chain(references_read(vs), bindings_read(vs), delegates_read(vs))))


class ItemChecks:
    """Each item's checks, computed afresh; `ValidationMemo` keeps them between builds."""

    def check(self, resources: Sequence[Resource], config: ResolvedConfig) -> Found:
        """The checks of every item of one build (`validate` adds the analysis of the whole)."""
        documents = [self.document(resource) for resource in resources]
        index = RepoIndex.of(documents, config)
        return Found(
            chain.from_iterable(document.findings for document in documents),
            [self.virtual_service(vs, index) for vs in config.virtual_services],
            check_gateway_fleets(index),
            chain.from_iterable(map(self.service_entry, index.service_entries)),
            chain.from_iterable(self.destination_rule(rule, index) for rule in index.rule_documents),
        )

    def shared_hosts(self, bound: BoundServer) -> Sequence[VirtualHost]:
        """`analysis.shared_virtual_hosts`, which `analyze` asks for every server."""
        return shared_virtual_hosts(bound)

    def document(self, resource: Resource) -> Document:
        delegate = None
        if resource.kind == "VirtualService" and not resource.spec.hosts:
            delegate = f"{resource.namespace}/{resource.name}"
        return Document(resource, resource.kind, check_resource(resource), delegate)

    def virtual_service(self, vs: ResolvedVirtualService, index: RepoIndex) -> VirtualServiceFindings:
        return VirtualServiceFindings(
            tuple(check_references(vs, index)),
            tuple(check_bindings(vs, index)),
            tuple(check_delegates(vs, index)),
            tuple(check_http_routes(vs)),
        )

    def service_entry(self, entry: Resource) -> tuple[Finding, ...]:
        return tuple(check_service_entry(entry))

    def destination_rule(self, rule: Resource, index: RepoIndex) -> tuple[Finding, ...]:
        return tuple(check_destination_rule(rule, index))
