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
from reconciler.protowire import length_delimited
from reconciler.translate.common import pack
from reconciler.translate.http_filters import CORS_FILTER, FAULT_FILTER
from reconciler.translate.route_action import apply_forward, direct_response_action, redirect_action
from reconciler.translate.route_headers import header_ops
from reconciler.translate.route_match import is_catch_all, match_applies, set_route_match
from reconciler.translate.route_policies import cors_config, fault_config
from reconciler.translate.snapshot import ROUTE, XdsResource, content_digest

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


HttpRoutes = Callable[[ResolvedConfig, ResolvedVirtualService, int, str, Proxy, bool], Sequence[rc.Route]]


@dataclass(frozen=True)
class VirtualHostPlan:
    """One virtual host of a route config, before encoding: its host and each VirtualService's routes in order.

    The route tuples are what `HttpRoutes` returned; a cache hands back the very same tuples for an unchanged
    VirtualService, so a plan can be a cache key for the virtual host's bytes (pipeline_cache).
    """

    host: str
    port: int
    routes: tuple[Sequence[rc.Route], ...]
    require_tls: bool = False  # a plain-text server's `tls.httpsRedirect` (listener_redirect.py)


@dataclass
class RouteConfigPlan:
    """A route configuration as virtual host plans; no plan at all answers 404 (a `blackhole` host)."""

    name: str
    port: int
    virtual_hosts: list[VirtualHostPlan]


VirtualHostEncoder = Callable[[VirtualHostPlan], bytes]  # a virtual host's entry in its RouteConfiguration


def plan_route_config(
    config: ResolvedConfig,
    name: str,
    port: int,
    servers: Iterable[BoundServer],
    http_routes: HttpRoutes | None = None,
) -> RouteConfigPlan:
    """The route configuration `name` for the servers of one port, as a plan (see `encode_route_config`).

    `http_routes` replaces `vs_routes`, e.g. by a cache keyed on the VirtualService and its inputs.
    """
    routes_of = http_routes or vs_routes
    vhosts: dict[str, list[Sequence[rc.Route]]] = {}
    built: set[tuple[str, str, str]] = set()  # (host, gateway, VS) already appended
    for bound in servers:
        proxy = proxy_of(config, bound)
        is_tls = bound.server.port.protocol.upper() == "HTTPS"
        gateway = bound.gateway.ref
        for host, virtual_services in bound.virtual_hosts:
            for vs in virtual_services:
                key = (host, gateway, vs.ref)
                if key in built:  # the same VS through a second server of this gateway on this port
                    continue
                built.add(key)
                routes = routes_of(config, vs, port, gateway, proxy, is_tls)
                if routes:  # none, e.g. when every match is for another port: istiod skips the VS, vhost and all
                    vhosts.setdefault(host, []).append(routes)
    return RouteConfigPlan(name, port, [VirtualHostPlan(h, port, tuple(vhosts[h])) for h in sorted(vhosts)])


def encode_route_config(plan: RouteConfigPlan, encode_virtual_host: VirtualHostEncoder | None = None) -> XdsResource:
    """The route configuration's serialized form, assembled from each virtual host's own serialization.

    Protobuf writes fields in field-number order and a nested message as tag, length and its own bytes, so
    `name` (field 1), then every virtual host (field 2), then the remaining fields is byte for byte the
    deterministic serialization of the whole message — while an unchanged virtual host's bytes can come
    from a cache instead of re-serializing megabytes (tests/unit/test_route_config_encoding.py).
    """
    encode = encode_virtual_host or virtual_host_entry
    if plan.virtual_hosts:
        entries = [encode(vhost) for vhost in plan.virtual_hosts]
    else:  # no VirtualService routes here: answer 404 rather than leave a listener without routes
        blackhole = rc.VirtualHost(name=f"{BLACKHOLE}:{plan.port}", domains=["*"])
        entries = [length_delimited(VIRTUAL_HOSTS, blackhole.SerializeToString())]
    head = route_pb2.RouteConfiguration(name=plan.name).SerializeToString(deterministic=True)
    tail = route_pb2.RouteConfiguration(
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        ignore_port_in_host_matching=True,
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY_BYTES),
    ).SerializeToString(deterministic=True)
    parts = (head, *entries, tail)
    body = b"".join(parts)
    return XdsResource(ROUTE, plan.name, body, content_digest(body), parts)


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
