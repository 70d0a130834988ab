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

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from reconciler.config.model import BoundServer, ResolvedConfig, ResolvedVirtualService
from reconciler.manifests.model import HTTPMatchRequest, HTTPRoute
from reconciler.translate.common import pack
from reconciler.translate.http_filters import CORS_FILTER, FAULT_FILTER
from reconciler.translate.route_action import apply_forward, direct_response_action, redirect_action
from reconciler.translate.route_headers import header_ops
from reconciler.translate.route_match import is_catch_all, match_applies, route_match
from reconciler.translate.route_policies import cors_config, fault_config

MAX_DIRECT_RESPONSE_BODY_BYTES = 1024 * 1024  # istiod's limit, the same one its webhook enforces


def route_config_name(port: int, bind: str) -> str:
    return f"http.{port}" + (f".{bind}" if bind else "")


@dataclass(frozen=True)
class Proxy:
    """What istiod knows about the gateway proxy when it evaluates sourceLabels and sourceNamespace."""

    labels: Mapping[str, str]
    namespace: str


HttpRoutes = Callable[[ResolvedConfig, ResolvedVirtualService, int, str, Proxy, bool], Sequence[rc.Route]]


def build_route_config(
    config: ResolvedConfig,
    name: str,
    port: int,
    servers: Iterable[BoundServer],
    http_routes: HttpRoutes | None = None,
) -> route_pb2.RouteConfiguration:
    """The route configuration `name` for the servers of one port.

    `http_routes` replaces `vs_routes`, e.g. by a cache keyed on the VirtualService and its inputs.
    """
    routes_of = http_routes or vs_routes
    vhosts: dict[str, rc.VirtualHost] = {}
    built: set[tuple[str, str, str]] = set()  # (host, gateway, VS) already appended
    for bound in servers:
        proxy = _proxy_of(config, bound)
        is_tls = bound.server.port.protocol.upper() == "HTTPS"
        for host, virtual_services in bound.virtual_hosts:
            for vs in virtual_services:
                key = (host, bound.gateway.ref, vs.ref)
                if key in built:  # the same VS through a second server of this gateway on this port
                    continue
                built.add(key)
                routes = routes_of(config, vs, port, bound.gateway.ref, proxy, is_tls)
                if not routes:  # e.g. every match is for another port: istiod skips the VS, vhost and all
                    continue
                if host not in vhosts:
                    vhosts[host] = rc.VirtualHost(
                        name=f"{host}:{port}", domains=[host], include_request_attempt_count=True
                    )
                vhosts[host].routes.extend(routes)
    for vhost in vhosts.values():
        _catch_all_last(vhost)
    virtual_hosts = [vhosts[h] for h in sorted(vhosts)]
    if not virtual_hosts:
        # No VirtualService routes here: answer 404 rather than leave a listener without routes.
        virtual_hosts = [rc.VirtualHost(name=f"blackhole:{port}", domains=["*"])]
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=virtual_hosts,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        ignore_port_in_host_matching=True,
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY_BYTES),
    )


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
    for rule in vs.spec.http:
        matches: list[HTTPMatchRequest | None] = list(rule.match) or [None]
        for match in matches:
            if match is not None and match.port and match.port != port:
                continue
            if match is not None and not match_applies(match, vs.namespace, gateway, proxy.labels, proxy.namespace):
                continue
            route = _route(config, vs, rule, match, port, is_tls)
            yield route
            if is_catch_all(route.match):
                return


def _route(
    config: ResolvedConfig,
    vs: ResolvedVirtualService,
    rule: HTTPRoute,
    match: HTTPMatchRequest | None,
    port: int,
    is_tls: bool,
) -> rc.Route:
    name = rule.name + "." + match.name if match is not None and match.name else rule.name
    route = rc.Route(name=name, match=route_match(match))
    if match is not None and match.stat_prefix:
        route.stat_prefix = match.stat_prefix
    _tag_source(route, vs)
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


def _tag_source(route: rc.Route, vs: ResolvedVirtualService) -> None:
    """Lets status and NACK reports point back at the VirtualService, as istioctl shows it."""
    path = f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/{vs.resource.name}"
    route.metadata.filter_metadata["istio"].CopyFrom(
        struct_pb2.Struct(fields={"config": struct_pb2.Value(string_value=path)})
    )


def _catch_all_last(vhost: rc.VirtualHost) -> None:
    """istiod's SortVHostRoutes: catch-all routes move to the end, the others keep their order."""
    routes = list(vhost.routes)
    catch_all = [is_catch_all(r.match) for r in routes]
    if catch_all == sorted(catch_all):  # already last: skip copying every route of the host again
        return
    ordered = [r for r, last in zip(routes, catch_all, strict=True) if not last]
    ordered += [r for r, last in zip(routes, catch_all, strict=True) if last]
    del vhost.routes[:]
    vhost.routes.extend(ordered)


def _proxy_of(config: ResolvedConfig, bound: BoundServer) -> Proxy:
    """A fleet member's labels are its Fleet's selector; its namespace, for istiod's checks, the Gateway's.

    One Gateway can serve several fleets, so the fleet is the one holding this very BoundServer object.
    """
    fleet = next((f for f in config.fleets.values() if any(s is bound for s in f.servers)), None)
    labels = fleet.spec.selector if fleet is not None else bound.gateway.spec.selector
    return Proxy(labels, bound.gateway.resource.namespace)
