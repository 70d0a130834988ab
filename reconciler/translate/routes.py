"""VirtualService HTTP rules → Envoy route configurations, one per HTTP port (`http.<port>`), as istiod does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from reconciler.config.model import BoundServer, ResolvedConfig, ResolvedVirtualService
from reconciler.manifests.model import HTTPMatchRequest, HTTPRoute, StringMatch
from reconciler.translate.common import destination_cluster, pack, seconds

# istiod's default retry policy on every route that sets none (route/retry/retry.go).
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY_ATTEMPTS = 2


def route_config_name(port: int, bind: str) -> str:
    return f"http.{port}" + (f".{bind}" if bind else "")


def build_route_config(
    config: ResolvedConfig, name: str, port: int, servers: Iterable[BoundServer]
) -> route_pb2.RouteConfiguration:
    vhosts: dict[str, rc.VirtualHost] = {}
    attached: dict[str, set[str]] = {}
    for bound in servers:
        for host, virtual_services in bound.virtual_hosts:
            vhost = vhosts.get(host)
            if vhost is None:
                vhost = vhosts[host] = rc.VirtualHost(name=f"{host}:{port}", domains=[host])
                vhost.include_request_attempt_count = True
                attached[host] = set()
            for vs in virtual_services:
                if vs.ref in attached[host]:  # the same VS through a second server on this port
                    continue
                attached[host].add(vs.ref)
                vhost.routes.extend(build_http_routes(config, vs, port))
    for vhost in vhosts.values():
        _catch_all_last(vhost)
    if not vhosts:
        # No VirtualService routes here: answer 404 rather than leave a listener without routes.
        vhosts["blackhole"] = rc.VirtualHost(name=f"blackhole:{port}", domains=["*"])
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[vhosts[h] for h in sorted(vhosts)],
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        ignore_port_in_host_matching=True,
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=1024 * 1024),
    )


def _catch_all_last(vhost: rc.VirtualHost) -> None:
    """istiod's SortVHostRoutes: catch-all routes move to the end, the others keep their order."""
    routes = list(vhost.routes)
    ordered = [r for r in routes if not _is_catch_all(r.match)] + [r for r in routes if _is_catch_all(r.match)]
    del vhost.routes[:]
    vhost.routes.extend(ordered)


def _is_catch_all(match: rc.RouteMatch) -> bool:
    if match.headers or match.query_parameters or match.dynamic_metadata:
        return False
    kind = match.WhichOneof("path_specifier")
    if kind == "prefix":
        return bool(match.prefix == "/")
    if kind == "safe_regex":
        return bool(match.safe_regex.regex in ("*", ".*"))
    return False


def build_http_routes(config: ResolvedConfig, vs: ResolvedVirtualService, port: int) -> Iterator[rc.Route]:
    """One Envoy route per match of each rule, in order; nothing after the first catch-all (istiod)."""
    for rule in vs.spec.http:
        matches = rule.match or [HTTPMatchRequest()]
        for match in matches:
            if match.port and match.port != port:
                continue
            route = _route(config, vs, rule, match, port)
            yield route
            if _is_catch_all(route.match):
                return


def _route(
    config: ResolvedConfig, vs: ResolvedVirtualService, rule: HTTPRoute, match: HTTPMatchRequest, port: int
) -> rc.Route:
    route = rc.Route(name=".".join(n for n in (rule.name, match.name) if n), match=_match(match))
    # Lets status and NACK reports point back at the VirtualService, as istioctl shows it.
    route.metadata.filter_metadata["istio"].CopyFrom(
        struct_pb2.Struct(
            fields={
                "config": struct_pb2.Value(
                    string_value=f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/"
                    f"{vs.resource.name}"
                )
            }
        )
    )
    route.route.CopyFrom(_action(config, rule, port))
    return route


def _match(match: HTTPMatchRequest) -> rc.RouteMatch:
    out = rc.RouteMatch(case_sensitive=wrappers_pb2.BoolValue(value=not match.ignore_uri_case))
    uri = match.uri
    if uri is None or (uri.exact is None and uri.prefix is None and uri.regex is None):
        out.prefix = "/"
    elif uri.exact is not None:
        out.path = uri.exact
    elif uri.prefix is not None:
        out.prefix = uri.prefix
    else:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex or ""))
    for name in sorted(match.headers):
        out.headers.append(_header(name, match.headers[name]))
    for pseudo, value in (
        (":method", match.method),
        (":authority", match.authority),
        (":scheme", match.scheme),
    ):
        if value is not None:
            out.headers.append(_header(pseudo, value))
    return out


def _header(name: str, value: StringMatch) -> rc.HeaderMatcher:
    if value.exact is None and value.prefix is None and (value.regex is None or value.regex == "*"):
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=_string_match(value))


def _string_match(value: StringMatch) -> string_pb2.StringMatcher:
    if value.exact is not None:
        return string_pb2.StringMatcher(exact=value.exact)
    if value.prefix is not None:
        return string_pb2.StringMatcher(prefix=value.prefix)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value.regex or ""))


def _action(config: ResolvedConfig, rule: HTTPRoute, port: int) -> rc.RouteAction:
    action = rc.RouteAction(timeout=seconds(rule.timeout.seconds if rule.timeout else 0))
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(action.timeout)
    destinations = rule.route
    if len(destinations) == 1:
        action.cluster = destination_cluster(config, destinations[0].destination, port)
    elif destinations:
        for d in destinations:
            if d.weight > 0:  # istiod drops 0-weight destinations; Envoy normalises the rest
                action.weighted_clusters.clusters.append(
                    rc.WeightedCluster.ClusterWeight(
                        name=destination_cluster(config, d.destination, port),
                        weight=wrappers_pb2.UInt32Value(value=d.weight),
                    )
                )
    action.retry_policy.CopyFrom(_retry_policy(rule))
    if not action.retry_policy.retry_on:
        action.ClearField("retry_policy")
    return action


def _retry_policy(rule: HTTPRoute) -> rc.RetryPolicy:
    retries = rule.retries
    attempts = DEFAULT_RETRY_ATTEMPTS if retries is None else retries.attempts
    if attempts <= 0:
        return rc.RetryPolicy()
    policy = rc.RetryPolicy(
        retry_on=(retries.retry_on if retries and retries.retry_on else DEFAULT_RETRY_ON),
        num_retries=wrappers_pb2.UInt32Value(value=attempts),
        host_selection_retry_max_attempts=5,
        retry_host_predicate=[
            rc.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
    )
    if retries is not None and retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(seconds(retries.per_try_timeout.seconds))
    return policy
