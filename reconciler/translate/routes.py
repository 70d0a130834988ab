"""VirtualService HTTP rules → Envoy route configurations, one per HTTP port (`http.<port>`), as istiod builds them.

Route order on a virtual host (tested in tests/conformance/test_http_composition.py):
1. VirtualServices in `config.resolve` order (name, then namespace), each VS's rules in the order written;
   each `match` of a rule becomes one Envoy route, and nothing of a VS is emitted after its first catch-all.
2. Then, as istiod's SortVHostRoutes does, every catch-all route (prefix `/` or regex `.*`, no other
   condition) moves to the end, keeping the relative order of the rest. First match wins in Envoy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from reconciler.config.model import BoundServer, ResolvedConfig, ResolvedVirtualService
from reconciler.manifests.model import HTTPMatchRequest, HTTPRoute
from reconciler.protowire import fields, length_delimited
from reconciler.translate.common import pack
from reconciler.translate.http_filters import CORS_FILTER, FAULT_FILTER
from reconciler.translate.route_action import apply_forward, direct_response_action, redirect_action
from reconciler.translate.route_headers import header_ops
from reconciler.translate.route_match import is_catch_all, match_applies, set_route_match
from reconciler.translate.route_policies import cors_config, fault_config
from reconciler.translate.snapshot import ROUTE, XdsResource, assembled_digest, field_digest

MAX_DIRECT_RESPONSE_BODY_BYTES = 1024 * 1024  # istiod's limit, the same one its webhook enforces
BLACKHOLE = "blackhole"
VIRTUAL_HOSTS = route_pb2.RouteConfiguration.DESCRIPTOR.fields_by_name["virtual_hosts"].number


def route_config_name(port: int, bind: str) -> str:
    return f"http.{port}" + (f".{bind}" if bind else "")


@dataclass(frozen=True)
class Proxy:
    """What istiod knows about the gateway proxy when it evaluates sourceLabels and sourceNamespace."""

    labels: Mapping[str, str]
    namespace: str

    @cached_property
    def key(self) -> tuple[tuple[tuple[str, str], ...], str]:
        """Hashable, for caches: computed once per proxy, not once per VirtualService."""
        return tuple(sorted(self.labels.items())), self.namespace


@dataclass(frozen=True)
class ServerContext:
    """What a VirtualService's routes read from the server they are bound to, besides the config."""

    gateway: str  # namespace/name
    proxy: Proxy
    is_tls: bool

    @cached_property
    def key(self) -> tuple[str, tuple[tuple[tuple[str, str], ...], str], bool]:
        """Hashable, for caches of routes."""
        return self.gateway, self.proxy.key, self.is_tls


def server_context(config: ResolvedConfig, bound: BoundServer) -> ServerContext:
    return ServerContext(bound.gateway.ref, proxy_of(config, bound), bound.server.port.protocol.upper() == "HTTPS")


# A server's VirtualServices for one host, with that server's context.
HostBinding = tuple[ServerContext, Sequence[ResolvedVirtualService]]
# One VirtualService's routes on one server (a cache may answer instead of `vs_routes`).
RoutesOf = Callable[[ResolvedVirtualService, ServerContext], Sequence[rc.Route]]


@dataclass(frozen=True)
class VirtualHostPlan:
    """One virtual host of a route config, before encoding: its host and each VirtualService's routes in order.

    The route tuples are what `RoutesOf` returned; a cache hands back the very same tuples for an unchanged
    VirtualService, so a virtual host whose tuples are all the same objects has the same bytes (route_configs.py).
    """

    host: str
    port: int
    routes: tuple[Sequence[rc.Route], ...]
    require_tls: bool = False  # a plain-text server's `tls.httpsRedirect` (listener_redirect.py)


def host_routes(bindings: Iterable[HostBinding], routes_of: RoutesOf) -> tuple[Sequence[rc.Route], ...]:
    """The routes of one host of a route configuration: each server's VirtualServices in server order.

    A VirtualService reached through a second server of the same gateway is taken once; one with no routes here
    (e.g. every match is for another port) is skipped, as istiod does.
    """
    taken: set[tuple[str, str]] = set()  # (gateway, VS)
    out = []
    for context, virtual_services in bindings:
        for vs in virtual_services:
            key = (context.gateway, vs.ref)
            if key in taken:
                continue
            taken.add(key)
            routes = routes_of(vs, context)
            if routes:
                out.append(routes)
    return tuple(out)


def route_config_resource(name: str, port: int, entries: Sequence[bytes], digests: Sequence[bytes]) -> XdsResource:
    """The route configuration `name`, assembled from its virtual hosts' entries (`virtual_host_entry`) in order,
    given each entry's `field_digest`.

    Protobuf writes fields in field-number order and a nested message as tag, length and its own bytes, so
    `name` (field 1), then every virtual host (field 2), then the remaining fields is byte for byte the
    deterministic serialization of the whole message — while an unchanged virtual host's bytes (and digest) can
    come from a cache instead of re-serializing megabytes (tests/unit/test_route_config_encoding.py).
    """
    if not entries:  # no VirtualService routes here: answer 404 rather than leave a listener without routes
        blackhole = rc.VirtualHost(name=f"{BLACKHOLE}:{port}", domains=["*"])
        entries = [length_delimited(VIRTUAL_HOSTS, blackhole.SerializeToString())]
        digests = [field_digest(entries[0])]
    head = route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)
    tail = route_pb2.RouteConfiguration(
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        ignore_port_in_host_matching=True,
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY_BYTES),
    ).SerializeToString(deterministic=True)
    parts = (head, *entries, tail)
    digest = assembled_digest(parts, [*_field_digests(head), *digests, *_field_digests(tail)])
    return XdsResource.joined_on_read(ROUTE, name, digest, parts)


def _field_digests(message: bytes) -> list[bytes]:
    return [field_digest(field) for _, field in fields(message)]


def virtual_host_entry(plan: VirtualHostPlan) -> bytes:
    """The virtual host as field `virtual_hosts` of a RouteConfiguration: tag, length and message, ready to join."""
    return length_delimited(VIRTUAL_HOSTS, encode_plain_virtual_host(plan))


def encode_plain_virtual_host(plan: VirtualHostPlan) -> bytes:
    vhost = rc.VirtualHost(name=f"{plan.host}:{plan.port}", domains=[plan.host], include_request_attempt_count=True)
    if plan.require_tls:
        vhost.require_tls = rc.VirtualHost.ALL
    vhost.routes.extend(_catch_all_last([route for routes in plan.routes for route in routes]))
    return bytes(vhost.SerializeToString(deterministic=True))


def vs_routes(
    config: ResolvedConfig, vs: ResolvedVirtualService, port: int, gateway: str, proxy: Proxy, is_tls: bool = False
) -> tuple[rc.Route, ...]:
    return tuple(build_http_routes(config, vs, port, gateway, proxy, is_tls))


def build_http_routes(
    config: ResolvedConfig, vs: ResolvedVirtualService, port: int, gateway: str, proxy: Proxy, is_tls: bool = False
) -> Iterator[rc.Route]:
    """One Envoy route per match of each rule, in order; nothing after the first catch-all (istiod).

    A match is dropped on a server of another port, or when its gateways/sourceLabels/sourceNamespace do not
    select this gateway (validation warns about the last two).
    """
    source = _source_metadata(vs)
    for rule in vs.spec.http:
        matches: list[HTTPMatchRequest | None] = list(rule.match) or [None]
        for match in matches:
            if match is not None and match.port and match.port != port:
                continue
            if match is not None and not match_applies(match, vs.namespace, gateway, proxy.labels, proxy.namespace):
                continue
            route = _route(config, source, rule, match, port, is_tls)
            yield route
            if is_catch_all(route.match):
                return


def _route(
    config: ResolvedConfig,
    source: bytes,
    rule: HTTPRoute,
    match: HTTPMatchRequest | None,
    port: int,
    is_tls: bool,
) -> rc.Route:
    name = rule.name + "." + match.name if match is not None and match.name else rule.name
    route = rc.Route(name=name)
    set_route_match(route.match, match)
    # Parsing the VS's serialized metadata is cheaper than copying its map fields from a message.
    route.metadata.MergeFromString(source)
    if match is not None and match.stat_prefix:
        route.stat_prefix = match.stat_prefix
    ops = header_ops(rule.headers)
    ops.apply(route)
    if rule.redirect is not None:
        route.redirect.CopyFrom(redirect_action(rule.redirect, port, is_tls))
    elif rule.direct_response is not None:
        route.direct_response.CopyFrom(direct_response_action(rule.direct_response))
    else:
        apply_forward(route, config, rule, port, ops.authority)
    if rule.fault is not None:
        fault = fault_config(rule.fault)
        if fault.HasField("delay") or fault.HasField("abort"):
            route.typed_per_filter_config[FAULT_FILTER].CopyFrom(pack(fault))
    if rule.cors_policy is not None:
        route.typed_per_filter_config[CORS_FILTER].CopyFrom(pack(cors_config(rule.cors_policy)))
    return route


def _source_metadata(vs: ResolvedVirtualService) -> bytes:
    """Lets status and NACK reports point back at the VirtualService, as istioctl shows it. Serialized, once per
    VS: every route of it carries the same."""
    path = f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/{vs.resource.name}"
    metadata = base_pb2.Metadata(
        filter_metadata={"istio": struct_pb2.Struct(fields={"config": struct_pb2.Value(string_value=path)})}
    )
    return bytes(metadata.SerializeToString(deterministic=True))


def _catch_all_last(routes: list[rc.Route]) -> list[rc.Route]:
    """istiod's SortVHostRoutes: catch-all routes move to the end, the others keep their order."""
    catch_all = [is_catch_all(r.match) for r in routes]
    if catch_all == sorted(catch_all):  # already last
        return routes
    ordered = [r for r, last in zip(routes, catch_all, strict=True) if not last]
    return ordered + [r for r, last in zip(routes, catch_all, strict=True) if last]


def proxy_of(config: ResolvedConfig, bound: BoundServer) -> Proxy:
    """A fleet member's labels are its Fleet's selector; its namespace, for istiod's checks, the Gateway's.

    One Gateway can serve several fleets, so the fleet is the one holding this very BoundServer object.
    """
    fleet = next((f for f in config.fleets.values() if any(s is bound for s in f.servers)), None)
    labels = fleet.spec.selector if fleet is not None else bound.gateway.spec.selector
    return Proxy(labels, bound.gateway.resource.namespace)
