"""What a matched route does: forward (destinations, rewrites, mirrors, timeout, retries), redirect, or answer
directly (istiod's applyHTTPRouteDestination, ApplyRedirect and ApplyDirectResponse).

Input is validated config: `reconciler.validation` has already rejected what Envoy or istiod cannot honour
(e.g. redirect codes other than 301/302/303/307/308, all-zero weights).
"""

from __future__ import annotations

import base64

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import wrappers_pb2

from reconciler.config.model import ResolvedConfig
from reconciler.manifests.durations import Duration
from reconciler.manifests.model import (
    Destination,
    HTTPDirectResponse,
    HTTPRedirect,
    HTTPRoute,
    HTTPRouteDestination,
    Percent,
)
from reconciler.translate.cluster_policy import hash_policies
from reconciler.translate.common import cluster_name, destination_cluster, destination_port, set_duration
from reconciler.translate.route_headers import header_ops
from reconciler.translate.route_policies import apply_retry_policy, fractional_percent, whole_percent

REDIRECT_CODES = {
    0: rc.RedirectAction.MOVED_PERMANENTLY,  # Istio's default
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}
DEFAULT_PORTS = {"http": 80, "https": 443}
NO_TIMEOUT = Duration(0)  # istiod writes an explicit 0 (no timeout) when the rule sets none


def apply_forward(route: rc.Route, config: ResolvedConfig, rule: HTTPRoute, port: int, authority: str) -> None:
    """Route to the rule's destinations. `authority` is the route-level `:authority` header set, if any."""
    action = route.route
    set_duration(action.timeout, rule.timeout or NO_TIMEOUT)
    # gRPC calls may shorten the timeout with their grpc-timeout header, up to this bound (0: unbounded). istiod
    # uses this deprecated field: its replacement, max_stream_duration.grpc_timeout_header_max, makes Envoy
    # 1.40 ignore the route timeout of plain HTTP requests (measured in test_http_resilience.py).
    action.max_grpc_timeout.CopyFrom(action.timeout)
    _apply_rewrite(action, rule, authority)
    if rule.mirror is not None or rule.mirrors:
        action.request_mirror_policies.extend(_mirror_policies(config, rule, port))
    destinations = rule.route
    # Each destination's service port, found once: the cluster name and the hash policy both need it.
    ports = [destination_port(config, d.destination, port) for d in destinations]
    _apply_destinations(route, destinations, ports)
    # DestinationRule consistent hash: the hash keys of the routed destinations (cluster_policy.py). Like
    # istiod, only a single hashed destination keeps retries on the same host.
    single = len(destinations) == 1
    routed = [(d.destination, p) for d, p in zip(destinations, ports, strict=True) if d.weight or single]
    hashing = hash_policies(config, routed)
    if hashing:
        action.hash_policy.extend(hashing)
    apply_retry_policy(action, rule.retries, consistent_hash=single and bool(hashing))


def _apply_rewrite(action: rc.RouteAction, rule: HTTPRoute, authority: str) -> None:
    rewrite = rule.rewrite
    if rewrite is not None:
        if rewrite.uri_regex_rewrite is not None:
            action.regex_rewrite.pattern.regex = rewrite.uri_regex_rewrite.match
            action.regex_rewrite.substitution = rewrite.uri_regex_rewrite.rewrite
        elif rewrite.uri:
            # After an exact (path) match Envoy replaces the whole path, after a prefix match only the prefix.
            action.prefix_rewrite = rewrite.uri
        authority = rewrite.authority or authority
    if authority:
        action.host_rewrite_literal = authority


def _apply_destinations(route: rc.Route, destinations: list[HTTPRouteDestination], ports: list[int]) -> None:
    action = route.route
    if len(destinations) == 1:
        # One destination takes all traffic whatever its weight; its headers join the route's.
        only = destinations[0].destination
        action.cluster = cluster_name(ports[0], only.subset, only.host)
        ops = header_ops(destinations[0].headers)
        ops.apply(route)
        if ops.authority and not action.host_rewrite_literal:
            action.host_rewrite_literal = ops.authority
        return
    clusters = action.weighted_clusters.clusters
    for weighted, port in zip(destinations, ports, strict=True):
        if weighted.weight == 0:  # istiod drops 0-weight destinations; Envoy normalises the other weights
            continue
        destination = weighted.destination
        cluster = clusters.add(name=cluster_name(port, destination.subset, destination.host))
        cluster.weight.value = weighted.weight
        ops = header_ops(weighted.headers)
        ops.apply(cluster)
        if ops.authority:
            cluster.host_rewrite_literal = ops.authority


def _mirror_policies(config: ResolvedConfig, rule: HTTPRoute, port: int) -> list[rc.RouteAction.RequestMirrorPolicy]:
    """`mirror` (+ mirrorPercentage, or the deprecated mirrorPercent) and each of `mirrors`; 0% mirrors nothing."""
    wanted: list[tuple[Destination, base_pb2.RuntimeFractionalPercent | None]] = []
    if rule.mirror is not None:
        wanted.append((rule.mirror, _mirror_fraction(rule.mirror_percentage, rule.mirror_percent)))
    wanted.extend((m.destination, _mirror_fraction(m.percentage, None)) for m in rule.mirrors)
    return [
        rc.RouteAction.RequestMirrorPolicy(
            cluster=destination_cluster(config, destination, port),
            runtime_fraction=fraction,
            trace_sampled=wrappers_pb2.BoolValue(value=False),
        )
        for destination, fraction in wanted
        if fraction is not None
    ]


def _mirror_fraction(percentage: Percent | None, percent: int | None) -> base_pb2.RuntimeFractionalPercent | None:
    if percentage is not None:
        value = fractional_percent(percentage) if percentage.value > 0 else None
    elif percent is not None:
        value = whole_percent(percent) if percent > 0 else None
    else:
        value = whole_percent(100)  # unset: mirror every request
    return None if value is None else base_pb2.RuntimeFractionalPercent(default_value=value)


def redirect_action(redirect: HTTPRedirect, port: int, is_tls: bool) -> rc.RedirectAction:
    out = rc.RedirectAction(host_redirect=redirect.authority, response_code=REDIRECT_CODES[redirect.redirect_code])
    if redirect.uri:
        out.path_redirect = redirect.uri
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme
    if redirect.derive_port == "FROM_REQUEST_PORT":
        # Envoy cannot derive the port per request, but each route config serves one port: use it.
        out.port_redirect = port
    elif redirect.derive_port == "FROM_PROTOCOL_DEFAULT":
        scheme = redirect.scheme or ("https" if is_tls else "http")
        out.port_redirect = DEFAULT_PORTS.get(scheme.lower(), 0)
    else:
        out.port_redirect = redirect.port
    # Unlike istiod we keep an explicit :80/:443: without port_redirect Envoy keeps whatever non-default port
    # the client's Host carried (e.g. https://host:8080 for a plain-HTTP listener on 8080), not the one asked.
    return out


def direct_response_action(response: HTTPDirectResponse) -> rc.DirectResponseAction:
    out = rc.DirectResponseAction(status=response.status)
    body = response.body
    if body is not None and body.string is not None:
        out.body.inline_string = body.string
    elif body is not None and body.bytes is not None:
        out.body.inline_bytes = base64.b64decode(body.bytes)
    return out
