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

from bisect import bisect_right
from collections.abc import Collection, Mapping, Sequence
from itertools import accumulate
from operator import itemgetter

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


def partial_snapshot(accepted: Snapshot, new: Snapshot) -> Snapshot:
    """What of `new` Envoy must accept for all of it to be accepted, given that it accepted `accepted`;
    empty when nothing Envoy could reject changed."""
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
                routes[name] if name in whole_routes else changed_virtual_hosts(old_routes.get(name), routes[name])
                for name in route_candidates & _named_by(routes, chosen_listeners)
            ),
        ]
    )


def changed_virtual_hosts(old: XdsResource | None, new: XdsResource) -> XdsResource:
    """`new` without the virtual hosts that `old` has byte for byte, except for a stub (name and domains) of
    each of those that could clash with a changed one by domain; all of `new` if it is new or its own fields
    (all but the virtual hosts) changed."""
    if old is None:
        return new
    old_fields, new_fields = _fields(old), _fields(new)
    if _own_fields(old_fields) != _own_fields(new_fields):
        return new
    unchanged = {entry for number, entry in old_fields if number == VIRTUAL_HOSTS}
    changed_domains = {
        domain.lower()
        for number, entry in new_fields
        if number == VIRTUAL_HOSTS and entry not in unchanged
        for domain in _domains(entry)
    }
    clashing = _holding(new.body, new_fields, changed_domains)
    kept = []
    for index, (number, entry) in enumerate(new_fields):
        if number != VIRTUAL_HOSTS or entry not in unchanged:
            kept.append(entry)
        elif index in clashing:
            kept.append(_stub(entry))
    body = b"".join(kept)
    return XdsResource(new.type_url, new.name, body, content_digest(body))


def _fields(route_config: XdsResource) -> list[tuple[int, bytes]]:
    """The route configuration's top-level fields; from the parts translation joined it from when it has them
    (its own fields before and after the virtual hosts, which need no split: they are compared whole)."""
    if not route_config.parts:
        return fields(route_config.body)
    head, *entries, tail = route_config.parts
    return [(0, head), *((VIRTUAL_HOSTS, entry) for entry in entries), (0, tail)]


def _domains(virtual_host_entry: bytes) -> list[bytes]:
    return [payload(entry) for number, entry in fields(payload(virtual_host_entry)) if number == DOMAINS]


def _holding(body: bytes, body_fields: Sequence[tuple[int, bytes]], lower_domains: Collection[bytes]) -> set[int]:
    """The indexes of the fields (consecutive slices of `body`) whose lower-cased bytes hold one of the domains
    (bytes.lower, like Envoy's, is ASCII only). One pass over the whole body in C, rather than lower-casing
    each of thousands of virtual hosts in turn."""
    if not lower_domains:
        return set()
    lowered = body.lower()
    ends = list(accumulate(map(len, map(itemgetter(1), body_fields))))
    holding = set()
    for domain in lower_domains:
        at = lowered.find(domain)
        while at >= 0:
            index = bisect_right(ends, at)
            if at + len(domain) <= ends[index]:  # within the field, not across its end: on to the next field
                holding.add(index)
                at = lowered.find(domain, ends[index])
            else:
                at = lowered.find(domain, at + 1)
    return holding


def _stub(virtual_host_entry: bytes) -> bytes:
    kept = (entry for number, entry in fields(payload(virtual_host_entry)) if number in STUB_FIELDS)
    return length_delimited(VIRTUAL_HOSTS, b"".join(kept))


def _own_fields(route_config_fields: list[tuple[int, bytes]]) -> bytes:
    return b"".join(entry for number, entry in route_config_fields if number != VIRTUAL_HOSTS)


def _changed(old: Mapping[str, XdsResource], new: Mapping[str, XdsResource]) -> set[str]:
    return {name for name, resource in new.items() if name not in old or old[name].digest != resource.digest}


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
    return {key for key in resources if any(key.encode() in namer.body for namer in namers)}
