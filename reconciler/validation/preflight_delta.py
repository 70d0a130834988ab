"""The part of a fleet's new snapshot Envoy must validate, given a snapshot of that fleet it accepted (pure).

If Envoy accepted snapshot A, it accepts snapshot B once it accepts what B changed, each piece together with
everything Envoy checks it against:

* a changed or added cluster, or one whose endpoints changed: the cluster with its endpoints;
* a changed RouteConfiguration: its own fields, its changed and added virtual hosts, and a stub (name and
  domains, no routes) of each unchanged one that could clash with them. Across the virtual hosts of a route
  config Envoy checks one thing only (RouteMatcher in router/config_impl.cc): no domain twice, compared in
  ASCII lower case (`*`, `*.suffix` and `prefix*` are kept apart by kind, each by its whole lower-cased
  string, so two domains clash exactly when they are equal in lower case). An unchanged virtual host can
  therefore fail the check only by a domain equal in lower case to one of a changed host's: those hosts,
  found in an index of lower-cased domains kept from one check to the next (`DomainIndex`), are the stubs,
  and Envoy no longer reads thousands of them per change. Changed route-config fields are checked against
  every route (e.g. `max_direct_response_body_size_bytes`, `cluster_specifier_plugins`), so they count as a
  change of the whole route config. It is inlined into the listeners that name it;
* a changed or added listener: every listener, since listeners conflict with each other (two on one
  address), the changed ones with their whole route configs (the connection manager is the context every
  route is checked in), the others with the part above, or an empty route config when theirs is unchanged;
* a changed secret, with the listeners and clusters that name it.

Whatever a listener or cluster in the check names (clusters, endpoints, secrets) comes with it, so the check
never fails for want of an unchanged resource. Removals need no check: a route to a removed cluster is no
error over RDS (`validate_clusters` is false), and nothing else can name a removed resource unchanged.
"Names" is a byte search for the name in the serialized resource; a hit inside a longer name only adds a
resource to the check.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from itertools import compress
from typing import Any, NamedTuple

from envoy.config.route.v3 import route_components_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from reconciler.protowire import fields, length_delimited, payload
from reconciler.translate.routes import VIRTUAL_HOSTS
from reconciler.translate.snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SECRET,
    Snapshot,
    XdsResource,
    content_digest,
)

STUB_FIELDS = frozenset(
    route_components_pb2.VirtualHost.DESCRIPTOR.fields_by_name[name].number for name in ("name", "domains")
)
DOMAINS = route_components_pb2.VirtualHost.DESCRIPTOR.fields_by_name["domains"].number


def _entry_domains_reader() -> Any:
    """A message type that reads a virtual host's entry (field `virtual_hosts` of a RouteConfiguration) for
    the domains alone: upb skips the rest (kept as unknown fields) in C, in about a third of the time of walking
    the fields in Python, and parses no route."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="reconciler/preflight_delta.proto", package="preflight_delta")
    host = file.message_type.add(name="VirtualHostDomains")
    host.field.add(name="domains", number=DOMAINS, type=field.TYPE_BYTES, label=field.LABEL_REPEATED)
    entry = file.message_type.add(name="VirtualHostEntry")
    entry.field.add(
        name="virtual_host",
        number=VIRTUAL_HOSTS,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".preflight_delta.VirtualHostDomains",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("preflight_delta.VirtualHostEntry"))


_ENTRY_DOMAINS = _entry_domains_reader()


def partial_snapshot(accepted: Snapshot, new: Snapshot, index: DomainIndex | None = None) -> Snapshot:
    """What of `new` Envoy must accept for all of it to be accepted, given that it accepted `accepted`;
    empty when nothing Envoy could reject changed. `index`: see `changed_virtual_hosts`."""
    changed = {t: _changed(accepted.of_type(t), new.of_type(t)) for t in PUSH_ORDER}
    listeners, routes, clusters = new.of_type(LISTENER), new.of_type(ROUTE), new.of_type(CLUSTER)
    whole_routes = _named_by(new, ROUTE, [listeners[name] for name in changed[LISTENER]])
    route_candidates = changed[ROUTE] | whole_routes
    if changed[LISTENER]:
        chosen_listeners = [listeners[name] for name in listeners]
    else:
        chosen_listeners = [listeners[name] for name in _naming(listeners, route_candidates | changed[SECRET])]
    chosen_clusters = [
        clusters[name]
        for name in changed[CLUSTER]
        | _naming(clusters, changed[ENDPOINT] | changed[SECRET])
        | _named_by(new, CLUSTER, chosen_listeners)
    ]
    endpoints, secrets = new.of_type(ENDPOINT), new.of_type(SECRET)
    chosen_secrets = changed[SECRET] | _named_by(new, SECRET, [*chosen_listeners, *chosen_clusters])
    old_routes = accepted.of_type(ROUTE)
    return Snapshot.of_resources(
        [
            *chosen_listeners,
            *chosen_clusters,
            *(endpoints[name] for name in _named_by(new, ENDPOINT, chosen_clusters)),
            *(secrets[name] for name in chosen_secrets),
            *(
                routes[name]
                if name in whole_routes
                else changed_virtual_hosts(old_routes.get(name), routes[name], index)
                for name in route_candidates & _named_by(new, ROUTE, chosen_listeners)
            ),
        ]
    )


def changed_virtual_hosts(old: XdsResource | None, new: XdsResource, index: DomainIndex | None = None) -> XdsResource:
    """`new` without the virtual hosts that `old` has byte for byte, except for a stub (name and domains) of
    each of those that could clash with a changed one by domain; all of `new` if it is new or its own fields
    (all but the virtual hosts) changed. `index`, kept between checks of a fleet, makes the cost follow the
    change instead of the size of the route configuration."""
    if old is None:
        return new
    old_own, old_entries = _split(old)
    own, entries = _split(new)
    if old_own != own:
        return new
    hosts = (index or DomainIndex()).of(new.name)
    if hosts.sync(old, old_entries) is None:
        return new
    fresh = hosts.sync(new, entries)  # `old` synced just before: what `new` has that `old` has not
    if fresh is None:
        return new
    changed = set(fresh)
    checked = hosts.clashing(fresh)
    body = b"".join([own[0], *(entries[i] if i in changed else _stub(entries[i]) for i in checked), own[1]])
    return XdsResource(new.type_url, new.name, body, content_digest(body))


class DomainIndex:
    """What `changed_virtual_hosts` keeps of a fleet's route configurations from one check to the next, by
    route configuration name. One per fleet: a check of several fleets runs them on threads of their own."""

    def __init__(self) -> None:
        self._by_config: dict[str, RouteConfigDomains] = {}

    def of(self, route_config: str) -> RouteConfigDomains:
        return self._by_config.setdefault(route_config, RouteConfigDomains())

    def seed(self, baseline: Snapshot) -> None:
        """Index the route configurations of a fleet's new baseline ahead of the first change (at 10k virtual
        hosts ~20 ms of parsing), so that the first check after a start costs what every later one does."""
        for name, resource in baseline.of_type(ROUTE).items():
            self.of(name).sync(resource, _split(resource)[1])


class _Host(NamedTuple):
    entry: bytes  # held, so that no other object can have its id while it is indexed
    domains: frozenset[bytes]  # lower-cased


class RouteConfigDomains:
    """The virtual hosts of one route configuration, as last synced, by the identity of their entries, and the
    inverted index lower-cased domain → those that have it. Each sync patches both with the entries that
    appeared and disappeared since the last one: translation hands back the very same bytes objects for
    unchanged virtual hosts, so finding them takes a few C-level passes, and only new entries are parsed."""

    def __init__(self) -> None:
        self._resource: XdsResource | None = None  # the route configuration last synced
        self._ids: list[int] = []  # id() of its entries, in order
        self._hosts: dict[int, _Host] = {}  # by id() of the entry
        self._by_domain: dict[bytes, set[int]] = {}  # lower-cased domain → id() of the entries with it

    def sync(self, resource: XdsResource, entries: Sequence[bytes]) -> list[int] | None:
        """Index `entries` (the virtual hosts of `resource`) instead of those last synced; the positions of the
        entries that were not there before byte for byte. None, with the index left as it was, if one entry
        object is there twice: an index by identity cannot tell the two apart."""
        if resource is self._resource:
            return []
        ids = list(map(id, entries))
        present = set(ids)
        if len(present) != len(ids):
            return None
        hosts = self._hosts
        appeared = list(compress(range(len(ids)), map(operator.not_, map(hosts.__contains__, ids))))
        stayed = len(ids) - len(appeared)
        gone = [hosts[key] for key in hosts.keys() - present] if len(hosts) > stayed else []
        # Equality as the fallback for identity: an entry that left and came back as another object with the
        # same bytes (a route configuration parsed from its body) is unchanged, and keeps its domains unparsed.
        twins = {host.entry: host for host in gone}
        fresh: list[int] = []
        added: list[_Host] = []
        for position in appeared:
            entry = entries[position]
            twin = twins.pop(entry, None)
            if twin is None:
                fresh.append(position)
                added.append(_Host(entry, _lowered_domains(entry)))
            else:
                added.append(_Host(entry, twin.domains))
        # Every new entry parsed: patch the index now, so that a malformed one (raising above) leaves it as it was.
        for host in gone:
            self._forget(host)
        for host in added:
            self._add(host)
        self._resource, self._ids = resource, ids
        return fresh

    def clashing(self, fresh: Sequence[int]) -> list[int]:
        """The positions, in order, of the entries at `fresh` and of those with a domain one of them has."""
        ids, hosts = self._ids, self._hosts
        fresh_ids = {ids[i] for i in fresh}
        domains = set().union(*(hosts[key].domains for key in fresh_ids))
        others = set().union(*map(self._by_domain.__getitem__, domains)) - fresh_ids
        return sorted([*fresh, *map(ids.index, others)])  # a few others: one per changed domain, if any

    def _add(self, host: _Host) -> None:
        key = id(host.entry)
        self._hosts[key] = host
        for domain in host.domains:
            self._by_domain.setdefault(domain, set()).add(key)

    def _forget(self, host: _Host) -> None:
        key = id(host.entry)
        del self._hosts[key]
        for domain in host.domains:
            keys = self._by_domain[domain]
            keys.discard(key)
            if not keys:
                del self._by_domain[domain]


def _split(route_config: XdsResource) -> tuple[tuple[bytes, bytes], Sequence[bytes]]:
    """The route configuration's own fields (those before the virtual hosts, and the rest) and its virtual hosts'
    entries; from the parts translation joined it from when it has them."""
    if route_config.parts:
        return (route_config.parts[0], route_config.parts[-1]), route_config.parts[1:-1]
    parsed = fields(route_config.body)
    hosts = [entry for number, entry in parsed if number == VIRTUAL_HOSTS]
    first = next((i for i, (number, _) in enumerate(parsed) if number == VIRTUAL_HOSTS), len(parsed))
    head = b"".join(entry for number, entry in parsed[:first] if number != VIRTUAL_HOSTS)
    tail = b"".join(entry for number, entry in parsed[first:] if number != VIRTUAL_HOSTS)
    return (head, tail), hosts


def _lowered_domains(virtual_host_entry: bytes) -> frozenset[bytes]:
    domains: Sequence[bytes] = _ENTRY_DOMAINS.FromString(virtual_host_entry).virtual_host.domains
    return frozenset(domain.lower() for domain in domains)


def _stub(virtual_host_entry: bytes) -> bytes:
    kept = (entry for number, entry in fields(payload(virtual_host_entry)) if number in STUB_FIELDS)
    return length_delimited(VIRTUAL_HOSTS, b"".join(kept))


def _changed(old: Mapping[str, XdsResource], new: Mapping[str, XdsResource]) -> set[str]:
    # Translation hands back the very same objects for unchanged resources: only the others are compared.
    names = list(new)
    others = compress(names, map(operator.is_not, map(old.get, names), new.values()))
    return {name for name in others if name not in old or old[name].digest != new[name].digest}


def _naming(resources: Mapping[str, XdsResource], names: Collection[str]) -> set[str]:
    """The resources that name any of `names`."""
    if not names:  # the usual case, and a loop over thousands of resources saved
        return set()
    wanted = [name.encode() for name in names]
    return {key for key, resource in resources.items() if any(name in resource.body for name in wanted)}


def _named_by(snapshot: Snapshot, type_url: str, namers: Collection[XdsResource]) -> set[str]:
    """The resources of `type_url` in `snapshot` that any of `namers` names. What one namer names is kept by its
    digest and the type's version (contents, not objects): a route change leaves both listeners and clusters
    as they were, and searching each listener for thousands of cluster names took ~1.5 ms a check at 10k."""
    named: set[str] = set()
    if not namers:
        return named
    version = snapshot.type_versions[type_url]
    keys: list[str] | None = None
    encoded: list[bytes] = []
    for namer in namers:  # a few, each searched for every key in C
        memo_key = (namer.digest, type_url, version)
        with _NAMED_LOCK:
            found = _NAMED.get(memo_key)
        if found is None:
            if keys is None:
                keys = list(snapshot.of_type(type_url))
                encoded = list(map(str.encode, keys))
            found = frozenset(compress(keys, map(namer.body.__contains__, encoded)))
            with _NAMED_LOCK:
                _NAMED[memo_key] = found
                if len(_NAMED) > _NAMED_ENTRIES:
                    _NAMED.popitem(last=False)
        named |= found
    return named


# `_named_by`'s answers per namer: threads check several fleets at once, hence the lock.
_NAMED: OrderedDict[tuple[str, str, str], frozenset[str]] = OrderedDict()
_NAMED_LOCK = threading.Lock()
_NAMED_ENTRIES = 4096
