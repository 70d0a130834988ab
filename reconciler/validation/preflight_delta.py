"""The part of a fleet's new snapshot Envoy must validate, given a snapshot of that fleet it accepted (pure).

If Envoy accepted snapshot A, it accepts snapshot B once it accepts what B changed, each piece together with
everything Envoy checks it against:

* a changed or added cluster, or one whose endpoints changed: the cluster with its endpoints;
* a changed RouteConfiguration: its own fields, its changed and added virtual hosts, and a stub (name and
  domains, no routes) of each unchanged one that could clash with them. Across the virtual hosts of a route
  config Envoy checks one thing only (RouteMatcher in router/config_impl.cc): no domain twice, compared in
  ASCII lower case, `*` included. An unchanged virtual host can therefore fail the check only by a domain
  that a changed one has, and every such host holds that domain's lower-case bytes; stubbing the unchanged
  hosts whose lower-cased bytes contain a changed domain keeps the check exact (a byte match elsewhere in a
  host only adds a harmless stub) while Envoy no longer reads thousands of stubs per change. Changed
  route-config fields are checked against every route (e.g. `max_direct_response_body_size_bytes`,
  `cluster_specifier_plugins`), so they count as a change of the whole route config. It is inlined into the
  listeners that name it;
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
from collections.abc import Collection, Mapping, Sequence
from itertools import compress, repeat
from operator import itemgetter
from typing import cast

from envoy.config.route.v3 import route_components_pb2

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


def partial_snapshot(accepted: Snapshot, new: Snapshot, lower: LowerCase | None = None) -> Snapshot:
    """What of `new` Envoy must accept for all of it to be accepted, given that it accepted `accepted`;
    empty when nothing Envoy could reject changed. `lower`: see `changed_virtual_hosts`."""
    changed = {t: _changed(accepted.of_type(t), new.of_type(t)) for t in PUSH_ORDER}
    listeners, routes, clusters = new.of_type(LISTENER), new.of_type(ROUTE), new.of_type(CLUSTER)
    whole_routes = _named_by(routes, [listeners[name] for name in changed[LISTENER]])
    route_candidates = changed[ROUTE] | whole_routes
    if changed[LISTENER]:
        chosen_listeners = [listeners[name] for name in listeners]
    else:
        chosen_listeners = [listeners[name] for name in _naming(listeners, route_candidates | changed[SECRET])]
    chosen_clusters = [
        clusters[name]
        for name in changed[CLUSTER]
        | _naming(clusters, changed[ENDPOINT] | changed[SECRET])
        | _named_by(clusters, chosen_listeners)
    ]
    endpoints, secrets = new.of_type(ENDPOINT), new.of_type(SECRET)
    chosen_secrets = changed[SECRET] | _named_by(secrets, [*chosen_listeners, *chosen_clusters])
    old_routes = accepted.of_type(ROUTE)
    return Snapshot.of_resources(
        [
            *chosen_listeners,
            *chosen_clusters,
            *(endpoints[name] for name in _named_by(endpoints, chosen_clusters)),
            *(secrets[name] for name in chosen_secrets),
            *(
                routes[name]
                if name in whole_routes
                else changed_virtual_hosts(old_routes.get(name), routes[name], lower)
                for name in route_candidates & _named_by(routes, chosen_listeners)
            ),
        ]
    )


def changed_virtual_hosts(old: XdsResource | None, new: XdsResource, lower: LowerCase | None = None) -> XdsResource:
    """`new` without the virtual hosts that `old` has byte for byte, except for a stub (name and domains) of
    each of those that could clash with a changed one by domain; all of `new` if it is new or its own fields
    (all but the virtual hosts) changed. `lower`, kept between checks, lower-cases each virtual host once."""
    if old is None:
        return new
    old_own, old_entries = _split(old)
    own, entries = _split(new)
    if old_own != own:
        return new
    unchanged = set(old_entries)
    fresh = list(compress(range(len(entries)), map(operator.not_, map(unchanged.__contains__, entries))))
    changed_domains = {domain.lower() for i in fresh for domain in _domains(entries[i])}
    lowered = (lower or LowerCase()).of(new.name, entries) if changed_domains else []
    clashing = set(fresh).union(*(compress(range(len(entries)), map(operator.contains, lowered, repeat(domain)))
                                  for domain in changed_domains))  # fmt: skip
    body = b"".join([own[0], *(entries[i] if i in fresh else _stub(entries[i]) for i in sorted(clashing)), own[1]])
    return XdsResource(new.type_url, new.name, body, content_digest(body))


class LowerCase:
    """The virtual host entries of each route configuration lower-cased (bytes.lower, like Envoy's domain
    comparison, is ASCII only), kept from one check of it to the next: a change lower-cases its own hosts, not
    megabytes of unchanged ones. One per fleet: a check of several fleets runs them on threads of their own."""

    def __init__(self) -> None:
        # by route configuration, by id: each value holds its entry, so no other object can have the id meanwhile
        self._by_config: dict[str, dict[int, tuple[bytes, bytes]]] = {}

    def of(self, name: str, entries: Sequence[bytes]) -> list[bytes]:
        known = self._by_config.get(name, {})
        found: list[tuple[bytes, bytes] | None] = list(map(known.get, map(id, entries)))
        for i in compress(range(len(found)), map(operator.is_, found, repeat(None))):
            found[i] = (entries[i], entries[i].lower())
        pairs = cast(list[tuple[bytes, bytes]], found)  # no None is left
        self._by_config[name] = dict(zip(map(id, entries), pairs, strict=True))
        return list(map(itemgetter(1), pairs))


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


def _domains(virtual_host_entry: bytes) -> list[bytes]:
    return [payload(entry) for number, entry in fields(payload(virtual_host_entry)) if number == DOMAINS]


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


def _named_by(resources: Mapping[str, XdsResource], namers: Collection[XdsResource]) -> set[str]:
    """The resources that any of `namers` names."""
    if not namers:
        return set()
    keys = list(resources)
    encoded = list(map(str.encode, keys))
    named: set[str] = set()
    for namer in namers:  # a few, each searched for every key in C
        named.update(compress(keys, map(namer.body.__contains__, encoded)))
    return named
