"""What `resolve` keeps between builds, so that a build that changes one document does about that much work.

The loader hands back the very same Resource objects for a file whose bytes did not change, so results worked
out from such objects alone are kept under their identity:

* the resolved VirtualService of each document, and, by value, which hosts of a server a VirtualService's hosts
  meet, for the documents of the latest build;
* the services and merged destination rules, while every ServiceEntry and DestinationRule is the object it was;
* the latest build itself (`LastBuild`), with where each VirtualService is bound in it. When the next build
  adds, removes or edits VirtualServices that take no part in delegation, and nothing else, `patch` takes the
  old ones out of their places and puts the new ones in theirs instead of resolving the repo again. Every part
  of the result it does not touch is the very object it was (translation finds what changed by identity).

A memoized resolve returns exactly what a fresh one would (tests/unit/test_resolve_memo.py holds us to that).
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Generic, TypeVar

from reconciler.config.delegates import has_delegate_rules, is_delegate
from reconciler.config.model import (
    BoundServer,
    FleetConfig,
    ResolvedConfig,
    ResolvedDestinationRule,
    ResolvedVirtualService,
    Service,
)
from reconciler.diagnostics import Finding
from reconciler.manifests.model import Resource
from reconciler.memo import identity_changes

V = TypeVar("V")
VirtualServiceResolver = Callable[[Resource, str], ResolvedVirtualService]
# The hosts of a server a VirtualService meets: (the server's qualified hosts, the VS's namespace, its hosts).
HostsKey = tuple[tuple[str, ...], str, tuple[str, ...]]
HostsMeet = Callable[[tuple[str, ...], str, tuple[str, ...]], list[str]]
VirtualHost = tuple[str, tuple[ResolvedVirtualService, ...]]  # a host of a server, and the VSs that route it
# Where a VirtualService is bound: fleet name, index in the fleet's servers, host of the server's virtual hosts.
# The host, not its index: adding a host to a server would move the index of every host after it.
Binding = tuple[str, int, str]
ServerPlace = tuple[str, int, tuple[str, ...]]  # a fleet's server: fleet name, index, its qualified hosts
# More documents added and removed than this (an edited one counts twice), and resolving the whole repo (from
# the memo tables) is about as fast.
MAX_PATCHED = 32


def istio_order(resource: Resource) -> tuple[str, str]:
    """Istio orders VirtualServices by creation time, then name, then namespace. Git has no creation time, so we
    keep Istio's tie-breakers: a VS's place never depends on file names or on the order of documents."""
    return resource.name, resource.namespace


def _vs_order(vs: ResolvedVirtualService) -> tuple[str, str]:
    return istio_order(vs.resource)


_host = operator.itemgetter(0)  # of a VirtualHost: hosts are sorted by it


class SameInputs(Generic[V]):
    """One result, kept while it is asked for with the very same input objects, in the same order."""

    def __init__(self) -> None:
        self._inputs: tuple[object, ...] = ()
        self._result: tuple[V] | None = None

    def get(self, inputs: Sequence[object], compute: Callable[[], V]) -> V:
        same = len(inputs) == len(self._inputs) and all(map(operator.is_, inputs, self._inputs))
        if not same or self._result is None:
            self._inputs, self._result = tuple(inputs), (compute(),)
        return self._result[0]


class BindingIndex:
    """Where each VirtualService of a build is bound, and which servers of the fleets each gateway makes."""

    def __init__(self) -> None:
        self.of_vs: dict[int, list[Binding]] = {}  # id(VS of routable) → where it is bound
        self.servers_of_gateway: dict[str, list[ServerPlace]] = {}  # gateway ref → its servers in the fleets

    def add_fleet(self, fleet: FleetConfig, server_hosts: Sequence[tuple[str, ...]]) -> None:
        """Index `fleet`, whose servers have `server_hosts` (qualified)."""
        for index, (bound, qualified) in enumerate(zip(fleet.servers, server_hosts, strict=True)):
            self.servers_of_gateway.setdefault(bound.gateway.ref, []).append((fleet.name, index, qualified))
            for host, attached in bound.virtual_hosts:
                for vs in attached:
                    self.of_vs.setdefault(id(vs), []).append((fleet.name, index, host))


@dataclass
class LastBuild:
    """The latest resolve's input and result, with where its VirtualServices are bound."""

    domain_suffix: str
    resources: tuple[Resource, ...]
    config: ResolvedConfig
    routable: list[ResolvedVirtualService]  # the VSs bound to servers: delegates left out, roots merged
    bindings: BindingIndex


class ResolveMemo:
    """Hand one to every `resolve` of a daemon (and only to it): `resolve` fills and renews it."""

    def __init__(self) -> None:
        self.domain_suffix: str | None = None
        # By id(resource); an entry holds its resource, so the id stands for no other object while it is kept.
        self.virtual_services: dict[int, tuple[Resource, ResolvedVirtualService]] = {}
        self._server_hosts: dict[HostsKey, list[str]] = {}
        self._server_hosts_before: dict[HostsKey, list[str]] = {}
        self.services: SameInputs[tuple[dict[str, Service], tuple[Finding, ...]]] = SameInputs()
        self.destination_rules: SameInputs[dict[str, ResolvedDestinationRule]] = SameInputs()
        self.last: LastBuild | None = None

    def start(self, domain_suffix: str) -> None:
        """Before resolving the whole repo: what depends on the domain suffix is kept only while it stays."""
        if domain_suffix != self.domain_suffix:
            self.virtual_services = {}
            self.destination_rules = SameInputs()
            self.domain_suffix = domain_suffix
        self._server_hosts_before, self._server_hosts = self._server_hosts, {}
        self.last = None

    def resolved_virtual_services(
        self, resources: Sequence[Resource], resolve_one: VirtualServiceResolver
    ) -> list[ResolvedVirtualService]:
        """Each document resolved, kept for the next build; documents of earlier builds are forgotten."""
        assert self.domain_suffix is not None, "start() first"
        suffix, before, kept = self.domain_suffix, self.virtual_services, {}
        out = []
        for resource in resources:
            entry = before.get(id(resource))
            if entry is None or entry[0] is not resource:
                entry = (resource, resolve_one(resource, suffix))
            kept[id(resource)] = entry
            out.append(entry[1])
        self.virtual_services = kept
        return out

    def server_hosts(self, key: HostsKey, compute: HostsMeet) -> list[str]:
        """Which hosts of a server a VirtualService meets (`compute(*key)`), kept by value for the next build."""
        names = self._server_hosts.get(key)
        if names is None:
            names = self._server_hosts_before.get(key)
            self._server_hosts[key] = names = compute(*key) if names is None else names
        return names

    def patch(
        self, resources: tuple[Resource, ...], resolve_one: VirtualServiceResolver, meet: HostsMeet
    ) -> ResolvedConfig | None:
        """The latest result with removed VirtualServices taken out and added ones put in (an edited one is both),
        or None when resolving it all is needed. `meet` computes `server_hosts`."""
        last = self.last
        if last is None:
            return None
        documents = _changed_virtual_services(last.resources, resources)
        if documents is None or len(documents[0]) + len(documents[1]) > MAX_PATCHED:
            return None
        old_documents, new_documents = documents
        config = last.config
        found = [_find(config.virtual_services, document) for document in old_documents]
        removed = [vs for vs in found if vs is not None]
        added = [resolve_one(document, last.domain_suffix) for document in new_documents]
        if len(removed) < len(found) or _unsure_order(config.virtual_services, removed, added):
            return None
        if any(is_delegate(vs) or has_delegate_rules(vs) for vs in chain(removed, added)):
            return None
        for vs in removed:
            self.virtual_services.pop(id(vs.resource), None)
        for vs in added:
            self.virtual_services[id(vs.resource)] = (vs.resource, vs)
        if removed or added:
            _apply(last, removed, added, lambda key: self.server_hosts(key, meet))
        last.resources = resources
        return last.config


def _changed_virtual_services(
    before: tuple[Resource, ...], after: tuple[Resource, ...]
) -> tuple[list[Resource], list[Resource]] | None:
    """The documents of `before` that `after` lacks and those it adds, when all are VirtualServices; else None.

    A reused Resource keeps its place relative to every other reused one (its location names its file, files
    load in path order, and a changed file's documents are all new objects), so what changed lies between the
    longest common head and tail, and only that stretch is searched by identity."""
    added, removed = identity_changes(after, before)
    if any(r.kind != "VirtualService" for r in chain(removed, added)):
        return None
    return removed, added


def _find(ordered: Sequence[ResolvedVirtualService], document: Resource) -> ResolvedVirtualService | None:
    """The resolved VS of `document` in VSs in Istio order."""
    index = _index(ordered, document)
    return None if index is None else ordered[index]


def _index(ordered: Sequence[ResolvedVirtualService], document: Resource) -> int | None:
    key = istio_order(document)
    start = bisect_left(ordered, key, key=_vs_order)
    stop = bisect_right(ordered, key, lo=start, key=_vs_order)
    return next((i for i in range(start, stop) if ordered[i].resource is document), None)


def _unsure_order(
    ordered: Sequence[ResolvedVirtualService],
    removed: list[ResolvedVirtualService],
    added: list[ResolvedVirtualService],
) -> bool:
    """Whether an added VS would tie in Istio order with another VS: the order of ties is the load order, which
    only a whole resolve knows."""
    keys = [_vs_order(vs) for vs in added]
    if len(set(keys)) < len(keys):
        return True
    leaving = Counter(map(_vs_order, removed))
    return any(
        bisect_right(ordered, key, key=_vs_order) - bisect_left(ordered, key, key=_vs_order) > leaving[key]
        for key in keys
    )


def _apply(
    last: LastBuild,
    removed: list[ResolvedVirtualService],
    added: list[ResolvedVirtualService],
    server_hosts: Callable[[HostsKey], list[str]],
) -> None:
    config, bindings = last.config, last.bindings
    virtual_services = list(config.virtual_services)
    servers = _ServerEdits(config.fleets)
    for vs in removed:
        for ordered in (virtual_services, last.routable):
            index = _index(ordered, vs.resource)
            assert index is not None, "a VS of the latest build is in its lists"
            del ordered[index]
        for binding in dict.fromkeys(bindings.of_vs.pop(id(vs), ())):  # a VS naming a gateway twice: once
            servers.unbind(vs, binding)
    for vs in added:
        insort(virtual_services, vs, key=_vs_order)
        insort(last.routable, vs, key=_vs_order)
        places: list[Binding] = []
        for gateway in vs.gateways:  # twice if named twice, as a whole resolve binds it
            for fleet, index, qualified_hosts in bindings.servers_of_gateway.get(gateway, ()):
                for host in server_hosts((qualified_hosts, vs.namespace, vs.hosts)):
                    servers.bind(vs, (fleet, index, host))
                    places.append((fleet, index, host))
        if places:
            bindings.of_vs[id(vs)] = places
    last.config = ResolvedConfig(
        servers.fleets(), config.services, config.destination_rules, tuple(virtual_services), config.findings
    )


class _ServerEdits:
    """The servers a patch changes, as copies of their virtual hosts; the others stay the objects they were."""

    def __init__(self, fleets: dict[str, FleetConfig]) -> None:
        self._fleets = fleets
        self._virtual_hosts: dict[tuple[str, int], list[VirtualHost]] = {}

    def unbind(self, vs: ResolvedVirtualService, binding: Binding) -> None:
        virtual_hosts, index, host = self._find(binding)
        attached = tuple(other for other in virtual_hosts[index][1] if other is not vs)
        if attached:
            virtual_hosts[index] = (host, attached)
        else:
            del virtual_hosts[index]

    def bind(self, vs: ResolvedVirtualService, binding: Binding) -> None:
        """Add `vs` to the host's VSs, in VS order (after itself, if bound twice, as a whole resolve puts it)."""
        virtual_hosts, index, host = self._find(binding)
        if index < len(virtual_hosts) and virtual_hosts[index][0] == host:
            attached = virtual_hosts[index][1]
            at = bisect_right(attached, _vs_order(vs), key=_vs_order)
            virtual_hosts[index] = (host, (*attached[:at], vs, *attached[at:]))
        else:
            virtual_hosts.insert(index, (host, (vs,)))

    def _find(self, binding: Binding) -> tuple[list[VirtualHost], int, str]:
        """The server's virtual hosts (a copy, made once), and where the host is or belongs in them."""
        fleet, server, host = binding
        virtual_hosts = self._virtual_hosts.get((fleet, server))
        if virtual_hosts is None:
            virtual_hosts = list(self._fleets[fleet].servers[server].virtual_hosts)
            self._virtual_hosts[(fleet, server)] = virtual_hosts
        return virtual_hosts, bisect_left(virtual_hosts, host, key=_host), host

    def fleets(self) -> dict[str, FleetConfig]:
        """The fleets with the changed servers in place."""
        fleets = dict(self._fleets)
        changed: dict[str, list[BoundServer]] = {}
        for (name, index), virtual_hosts in self._virtual_hosts.items():
            servers = changed.setdefault(name, list(fleets[name].servers))
            bound = servers[index]
            servers[index] = BoundServer(bound.gateway, bound.server, bound.index, tuple(virtual_hosts))
        for name, servers in changed.items():
            fleet = fleets[name]
            fleets[name] = FleetConfig(fleet.name, fleet.resource, fleet.gateways, tuple(servers))
        return fleets
