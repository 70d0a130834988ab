"""What `resolve` keeps between builds, so that a build that changes one document does about that much work.

The loader hands back the very same Resource objects for a file whose bytes did not change, so results worked
out from such objects alone are kept under their identity:

* the resolved VirtualService of each document, and, by value, which hosts of a server a VirtualService's hosts
  meet, for the documents of the latest build;
* the services and merged destination rules, while every ServiceEntry and DestinationRule is the object it was;
* the latest build itself (`LastBuild`), with where each VirtualService sits in it. When the next build differs
  only in VirtualServices that keep their name, hosts and gateways and take no part in delegation, `patch`
  puts the new ones in the old ones' places instead of resolving the repo again.

A memoized resolve returns exactly what a fresh one would (tests/unit/test_resolve_memo.py holds us to that).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress
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

V = TypeVar("V")
VirtualServiceResolver = Callable[[Resource, str], ResolvedVirtualService]
# The hosts of a server a VirtualService meets: (the server's qualified hosts, the VS's namespace, its hosts).
HostsKey = tuple[tuple[str, ...], str, tuple[str, ...]]
# Where a VirtualService is bound: fleet name, index in the fleet's servers, index in the server's virtual hosts.
Binding = tuple[str, int, int]
Swap = tuple[ResolvedVirtualService, ResolvedVirtualService]  # the resolved VS of a document before, and now
# More changed documents than this and resolving the whole repo (from the memo tables) is about as fast.
MAX_PATCHED = 16


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


@dataclass
class LastBuild:
    """The latest resolve's input and result, with indexes into the result by the identity of its parts."""

    domain_suffix: str
    resources: tuple[Resource, ...]
    config: ResolvedConfig
    routable: list[ResolvedVirtualService]  # the VSs bound to servers: delegates left out, roots merged
    bindings: dict[int, list[Binding]]  # id(VS of routable) → where it is bound
    position: dict[int, int]  # id(resource) → index in config.virtual_services
    routed_as_is: dict[int, int]  # id(VS) → index in routable, for the VSs routed unmerged

    @classmethod
    def of(
        cls,
        domain_suffix: str,
        resources: tuple[Resource, ...],
        config: ResolvedConfig,
        routable: list[ResolvedVirtualService],
        bindings: dict[int, list[Binding]],
    ) -> LastBuild:
        position = {id(vs.resource): i for i, vs in enumerate(config.virtual_services)}
        routed_as_is = {id(vs): i for i, vs in enumerate(routable)}
        return cls(domain_suffix, resources, config, routable, bindings, position, routed_as_is)


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

    def server_hosts(
        self, key: HostsKey, compute: Callable[[tuple[str, ...], str, tuple[str, ...]], list[str]]
    ) -> list[str]:
        """Which hosts of a server a VirtualService meets (`compute(*key)`), kept by value for the next build."""
        names = self._server_hosts.get(key)
        if names is None:
            names = self._server_hosts_before.get(key)
            self._server_hosts[key] = names = compute(*key) if names is None else names
        return names

    def patch(self, resources: tuple[Resource, ...], resolve_one: VirtualServiceResolver) -> ResolvedConfig | None:
        """The latest result with changed VirtualServices put in place, or None when resolving it all is needed."""
        last = self.last
        if last is None or len(resources) != len(last.resources):
            return None
        changed = list(compress(range(len(resources)), map(operator.is_not, resources, last.resources)))
        if len(changed) > MAX_PATCHED:
            return None
        swaps: list[Swap] = []
        for i in changed:
            before, after = last.resources[i], resources[i]
            if before.kind != "VirtualService" or after.kind != "VirtualService" or id(before) not in last.position:
                return None
            old = last.config.virtual_services[last.position[id(before)]]
            new = resolve_one(after, last.domain_suffix)
            if not _binds_alike(old, new):
                return None
            swaps.append((old, new))
        for old, new in swaps:
            self.virtual_services.pop(id(old.resource), None)
            self.virtual_services[id(new.resource)] = (new.resource, new)
        _apply(last, swaps)
        last.resources = resources
        return last.config


def _binds_alike(old: ResolvedVirtualService, new: ResolvedVirtualService) -> bool:
    """Whether `new` takes `old`'s place everywhere: same order, same bindings, no delegation on either side."""
    return (
        old.resource.name == new.resource.name
        and old.namespace == new.namespace
        and old.hosts == new.hosts
        and old.gateways == new.gateways
        and not any(is_delegate(vs) or has_delegate_rules(vs) for vs in (old, new))
    )


def _apply(last: LastBuild, swaps: list[Swap]) -> None:
    config = last.config
    virtual_services = list(config.virtual_services)
    fleets = dict(config.fleets)
    servers: dict[str, list[BoundServer]] = {}
    for old, new in swaps:
        index = last.position.pop(id(old.resource))
        last.position[id(new.resource)] = index
        virtual_services[index] = new
        routed = last.routed_as_is.pop(id(old))
        last.routed_as_is[id(new)] = routed
        last.routable[routed] = new
        bindings = last.bindings.pop(id(old), [])
        last.bindings[id(new)] = bindings
        for fleet_name, server, host in bindings:
            fleet_servers = servers.setdefault(fleet_name, list(fleets[fleet_name].servers))
            bound = fleet_servers[server]
            virtual_hosts = list(bound.virtual_hosts)
            name, attached = virtual_hosts[host]
            virtual_hosts[host] = (name, tuple(new if vs is old else vs for vs in attached))
            fleet_servers[server] = BoundServer(bound.gateway, bound.server, bound.index, tuple(virtual_hosts))
    for name, fleet_servers in servers.items():
        fleet = fleets[name]
        fleets[name] = FleetConfig(fleet.name, fleet.resource, fleet.gateways, tuple(fleet_servers))
    last.config = ResolvedConfig(
        fleets, config.services, config.destination_rules, tuple(virtual_services), config.findings
    )
