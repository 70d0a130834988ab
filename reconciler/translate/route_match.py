"""HTTPMatchRequest → Envoy RouteMatch, and which matches a gateway keeps (istiod's TranslateRouteMatch and
sourceMatchHTTP in pilot/pkg/networking/core/route/route.go)."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from reconciler.config.resolve import resolve_gateway_name
from reconciler.manifests.model import HTTPMatchRequest, StringMatch

# Appended after the ordinary headers, in this order, as istiod does.
PSEUDO_HEADER_FIELDS = ((":method", "method"), (":authority", "authority"), (":scheme", "scheme"))


def set_route_match(out: rc.RouteMatch, match: HTTPMatchRequest | None) -> None:
    """Fill a route's (empty) `match` in place: building a RouteMatch apart and copying it in costs more."""
    uri = match.uri if match is not None else None
    if uri is None or (uri.exact is None and uri.prefix is None and uri.regex is None):
        out.prefix = "/"
    elif uri.exact is not None:
        out.path = uri.exact
    elif uri.prefix is not None:
        out.prefix = uri.prefix
    else:
        out.safe_regex.regex = uri.regex or ""
    if match is None:  # a rule without `match` (istiod leaves case_sensitive unset here)
        return
    out.case_sensitive.value = not match.ignore_uri_case
    if match.headers or match.without_headers:
        headers = [_header(name, value) for name, value in match.headers.items()]
        headers += [_without_header(name, value) for name, value in match.without_headers.items()]
        out.headers.extend(sorted(headers, key=lambda h: h.name))  # sorted for stable output
    for pseudo, attribute in PSEUDO_HEADER_FIELDS:
        value: StringMatch | None = getattr(match, attribute)
        if value is not None:
            out.headers.append(_header(pseudo, value))
    if match.query_params:
        out.query_parameters.extend(_query(name, match.query_params[name]) for name in sorted(match.query_params))


def is_catch_all(match: rc.RouteMatch) -> bool:
    """istiod's IsCatchAllRoute: prefix `/` or regex `.*`, with no header, query or metadata condition."""
    # The path first: it rules out nearly every route. An unset oneof member reads as "", so each test also
    # checks which member is set.
    if match.prefix != "/" and match.safe_regex.regex != ".*":
        return False
    return not (match.headers or match.query_parameters or match.dynamic_metadata)


def match_applies(
    match: HTTPMatchRequest, vs_namespace: str, gateway: str, proxy_labels: Mapping[str, str], proxy_namespace: str
) -> bool:
    """istiod's sourceMatchHTTP for a gateway proxy.

    `match.gateways` can only narrow the VS's gateways (a gateway named only here is never consulted). Without
    them, sourceLabels and sourceNamespace are compared with the gateway's own labels and namespace.
    """
    if match.gateways:
        return gateway in {resolve_gateway_name(g, vs_namespace) for g in match.gateways}
    if not match.source_labels and not match.source_namespace:  # the common case, once per route
        return True
    labels_match = all(proxy_labels.get(k) == v for k, v in match.source_labels.items())
    return labels_match and match.source_namespace in ("", proxy_namespace)


def string_matcher(value: StringMatch) -> string_pb2.StringMatcher:
    if value.exact is not None:
        return string_pb2.StringMatcher(exact=value.exact)
    if value.prefix is not None:
        return string_pb2.StringMatcher(prefix=value.prefix)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value.regex or ""))


def _is_presence(value: StringMatch) -> bool:
    """`{}` and `regex: "*"` mean "present" in Istio (`*` is not RE2; istio#20629)."""
    return value.exact is None and value.prefix is None and value.regex in (None, "*")


def _header(name: str, value: StringMatch) -> rc.HeaderMatcher:
    if _is_presence(value):
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=string_matcher(value))


def _without_header(name: str, value: StringMatch) -> rc.HeaderMatcher:
    matcher = _header(name, value)
    matcher.invert_match = True
    # Envoy rejects treat_missing_header_as_empty beside present_match; elsewhere a missing header is "" so
    # `withoutHeaders: {x: {exact: a}}` matches requests without `x` too.
    matcher.treat_missing_header_as_empty = not _is_presence(value)
    return matcher


def _query(name: str, value: StringMatch) -> rc.QueryParameterMatcher:
    if _is_presence(value):
        return rc.QueryParameterMatcher(name=name, present_match=True)
    return rc.QueryParameterMatcher(name=name, string_match=string_matcher(value))
