"""Istio's HTTP route rules (validateHTTPRoute and its helpers), with RE2 and Envoy's own limits added."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from enum import Enum

from reconciler.manifests.model import (
    CorsPolicy,
    Headers,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    StringMatch,
)
from reconciler.manifests.status_codes import GRPC_STATUS_CODES, is_known_http_status
from reconciler.validation.common import Path, ResourceReport
from reconciler.validation.fields import (
    check_destination,
    check_duration,
    check_gateway_names,
    check_labels,
    check_percentage,
    check_port,
    check_weights,
)
from reconciler.validation.headers import (
    cors_header_name_error,
    header_value_error,
    is_authority_header,
    match_header_name_error,
    modify_name_error,
    request_set_name_error,
)
from reconciler.validation.names import is_dns_label
from reconciler.validation.regex import regex_error

# Redirect codes Envoy can send (RedirectAction.RedirectResponseCode). istiod accepts any 3xx and then emits a
# route without an action for the others, which Envoy rejects.
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
CORS_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"})
RETRY_ON_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
MAX_DIRECT_BODY = 1024 * 1024
LARGE_DIRECT_BODY = 100 * 1024


class RouteKind(Enum):
    INDEPENDENT = "independent"
    ROOT = "root"  # delegates to another VirtualService
    DELEGATE = "delegate"  # a rule of a delegate VirtualService (one without hosts)


def check_http_route(report: ResourceReport, route: HTTPRoute, path: Path, in_delegate: bool) -> None:
    kind = RouteKind.INDEPENDENT
    if in_delegate:
        kind = RouteKind.DELEGATE
    elif route.delegate is not None:
        kind = RouteKind.ROOT
    _check_actions(report, route, path, kind)
    for i, match in enumerate(route.match):
        _check_match(report, match, (*path, "match", i))
    # The parts a rule leaves out are skipped here, before their paths are built: most rules set few of them.
    if route.headers is not None:
        _check_header_operations(report, route.headers, (*path, "headers"))
    if route.cors_policy is not None:
        _check_cors(report, route.cors_policy, (*path, "corsPolicy"))
    if route.fault is not None:
        _check_fault(report, route.fault, (*path, "fault"))
    _check_mirrors(report, route, path)
    if route.redirect is not None:
        _check_redirect(report, route.redirect, (*path, "redirect"))
    if route.direct_response is not None:
        _check_direct_response(report, route.direct_response, (*path, "directResponse"))
    if route.retries is not None:
        _check_retries(report, route.retries, (*path, "retries"))
    if route.rewrite is not None:
        _check_rewrite(report, route.rewrite, (*path, "rewrite"))
    if route.rewrite is not None or route.headers is not None:
        _check_authority_set_once(report, route, path)
    for i, destination in enumerate(route.route):
        check_destination(report, (*path, "route", i, "destination"), destination.destination)
        if destination.headers is not None:
            _check_header_operations(report, destination.headers, (*path, "route", i, "headers"))
    check_weights(report, (*path, "route"), [d.weight for d in route.route])
    if route.timeout is not None:
        check_duration(report, (*path, "timeout"), route.timeout)


def _check_actions(report: ResourceReport, route: HTTPRoute, path: Path, kind: RouteKind) -> None:
    """What a rule does: exactly one of route, redirect, directResponse (or delegate, for a root VS)."""
    if kind is RouteKind.ROOT:
        for present, field_name in ((route.redirect is not None, "redirect"), (bool(route.route), "route")):
            if present:
                report.error(
                    (*path, field_name),
                    "conflicting-actions",
                    f"a rule with delegate cannot also have {field_name}; the delegate VirtualService routes",
                )
        return
    if kind is RouteKind.DELEGATE and route.delegate is not None:
        report.error((*path, "delegate"), "nested-delegate", "a delegate VirtualService cannot delegate again")
    action = "redirect" if route.redirect is not None else "directResponse" if route.direct_response else None
    if action is not None:
        others = {
            "route": bool(route.route),
            "fault": route.fault is not None,
            "rewrite": route.rewrite is not None,
            "redirect": route.redirect is not None and action != "redirect",
            "directResponse": route.direct_response is not None and action != "directResponse",
        }
        for field_name, present in others.items():
            if present:
                report.error(
                    (*path, field_name),
                    "conflicting-actions",
                    f"a rule with {action} cannot also have {field_name}; split it into two rules",
                )
    elif not route.route:
        report.error(path, "missing-action", "the rule needs a route, a redirect or a directResponse")
    if route.mirror is not None and route.mirrors:
        report.error((*path, "mirrors"), "conflicting-actions", "use either mirror or mirrors, not both")


def _check_match(report: ResourceReport, match: HTTPMatchRequest, path: Path) -> None:
    for name, value in match.headers.items():
        _check_header_name(report, (*path, "headers", name), name)
        check_string_match(report, (*path, "headers", name), value)
    for name, value in match.without_headers.items():
        _check_header_name(report, (*path, "withoutHeaders", name), name)
        # `regex: "*"` is not a regex here: it means "the header is present".
        check_string_match(report, (*path, "withoutHeaders", name), value, star_means_present=True)
    # What a match leaves out is skipped before its path is built: most matches set one or two conditions.
    if match.uri is not None:
        check_string_match(report, (*path, "uri"), match.uri, empty_prefix_ok=True)
    for field_name, pseudo in (("scheme", match.scheme), ("method", match.method), ("authority", match.authority)):
        if pseudo is not None:
            check_string_match(report, (*path, field_name), pseudo)
    for name, value in match.query_params.items():
        check_string_match(report, (*path, "queryParams", name), value)
    if match.port:
        check_port(report, (*path, "port"), match.port)
    if match.source_labels:
        check_labels(report, (*path, "sourceLabels"), match.source_labels)
    if match.gateways:
        check_gateway_names(report, (*path, "gateways"), match.gateways)
    if match.source_namespace and not is_dns_label(match.source_namespace):
        report.error(
            (*path, "sourceNamespace"), "invalid-namespace", f"{match.source_namespace!r} is not a namespace name"
        )


def _check_header_name(report: ResourceReport, path: Path, name: str) -> None:
    problem = match_header_name_error(name)
    if problem:
        report.error(path, "invalid-header-name", problem)


def check_string_match(
    report: ResourceReport,
    path: Path,
    match: StringMatch | None,
    empty_prefix_ok: bool = False,
    star_means_present: bool = False,
) -> None:
    """Exactly one of exact/prefix/regex (or none: presence); a non-empty prefix; a regex RE2 and Envoy accept."""
    if match is None:
        return
    if (match.exact is not None) + (match.prefix is not None) + (match.regex is not None) > 1:
        given = [name for name in ("exact", "prefix", "regex") if getattr(match, name) is not None]
        report.error(
            path, "ambiguous-string-match", f"give only one of exact, prefix or regex (found {', '.join(given)})"
        )
    if match.prefix == "" and not empty_prefix_ok:
        report.error((*path, "prefix"), "empty-prefix", "an empty prefix matches everything; remove the match instead")
    if match.regex is not None and not (star_means_present and match.regex == "*"):
        check_regex(report, (*path, "regex"), match.regex)


def check_regex(report: ResourceReport, path: Path, pattern: str) -> None:
    problem = regex_error(pattern)
    if problem is not None:
        report.error(path, *problem)


def _check_header_operations(report: ResourceReport, headers: Headers, path: Path) -> None:
    for side, operations in (("request", headers.request), ("response", headers.response)):
        if operations is None:
            continue
        name_check: Callable[[str], str | None] = request_set_name_error if side == "request" else modify_name_error
        for verb, values in (("set", operations.set), ("add", operations.add)):
            for name, value in values.items():
                _report(report, (*path, side, verb, name), "invalid-header-operation", name_check(name))
                _report(report, (*path, side, verb, name), "invalid-header-value", header_value_error(value))
        for i, name in enumerate(operations.remove):
            _report(report, (*path, side, "remove", i), "invalid-header-operation", modify_name_error(name))


def _report(report: ResourceReport, path: Path, code: str, problem: str | None) -> None:
    if problem is not None:
        report.error(path, code, problem)


def _check_authority_set_once(report: ResourceReport, route: HTTPRoute, path: Path) -> None:
    """The authority can be rewritten in one place only: rewrite.authority or a request Host/:authority header."""
    places: list[Path] = []
    if route.rewrite is not None and route.rewrite.authority:
        places.append((*path, "rewrite", "authority"))
    request = route.headers.request if route.headers else None
    if request is not None:
        for verb, values in (("set", request.set), ("add", request.add)):
            places.extend((*path, "headers", "request", verb, name) for name in values if is_authority_header(name))
    for extra in places[1:]:
        report.error(
            extra,
            "authority-set-twice",
            "the authority (Host) is already set elsewhere in this rule; set it in one place only",
            [report.resource.locate(*places[0])],
        )


def _check_cors(report: ResourceReport, policy: CorsPolicy, path: Path) -> None:
    for i, origin in enumerate(policy.allow_origins):
        value = origin.exact or origin.prefix or origin.regex
        if not value:
            report.error((*path, "allowOrigins", i), "invalid-cors-origin", "an allowed origin cannot be empty")
        check_string_match(report, (*path, "allowOrigins", i), origin)
    for i, method in enumerate(policy.allow_methods):
        if method not in CORS_METHODS:
            report.error((*path, "allowMethods", i), "invalid-cors-method", f"{method!r} is not an HTTP method")
    for field_name, names in (("allowHeaders", policy.allow_headers), ("exposeHeaders", policy.expose_headers)):
        for i, name in enumerate(names):
            problem = cors_header_name_error(name)
            if problem:
                report.error((*path, field_name, i), "invalid-header-name", problem)
    if policy.max_age is not None:
        check_duration(report, (*path, "maxAge"), policy.max_age)
        if policy.max_age.nanos % 1_000_000_000:
            report.error((*path, "maxAge"), "invalid-duration", "maxAge is sent in whole seconds; round it")


def _check_fault(report: ResourceReport, fault: HTTPFaultInjection, path: Path) -> None:
    if fault.abort is None and fault.delay is None:
        report.error(path, "empty-fault", "a fault needs an abort, a delay or both")
    if fault.abort is not None:
        abort = fault.abort
        check_percentage(report, (*path, "abort", "percentage"), abort.percentage)
        if abort.grpc_status:
            if abort.grpc_status not in GRPC_STATUS_CODES:
                report.error(
                    (*path, "abort", "grpcStatus"),
                    "invalid-grpc-status",
                    f"{abort.grpc_status!r} is not a gRPC status name (e.g. UNAVAILABLE, NOT_FOUND)",
                )
        elif abort.http_status:
            check_http_status(report, (*path, "abort", "httpStatus"), abort.http_status)
        else:
            report.warning((*path, "abort"), "fault-abort-without-status", "the abort sets no httpStatus or grpcStatus")
    if fault.delay is not None:
        check_percentage(report, (*path, "delay", "percentage"), fault.delay.percentage)
        if not 0 <= fault.delay.percent <= 100:
            report.error((*path, "delay", "percent"), "invalid-percentage", f"{fault.delay.percent} is not in 0..100")
        check_duration(report, (*path, "delay", "fixedDelay"), fault.delay.fixed_delay)


def check_http_status(report: ResourceReport, path: Path, status: int) -> None:
    # istiod lets 600 through (it checks `> 600`); Envoy's own limit is 200..599 and it rejects 600.
    if not 200 <= status <= 599:
        report.error(path, "invalid-http-status", f"HTTP status {status} is not in 200..599")


def _check_mirrors(report: ResourceReport, route: HTTPRoute, path: Path) -> None:
    if route.mirror_percent is not None:
        report.warning(
            (*path, "mirrorPercent"), "deprecated-field", "mirrorPercent is deprecated; use mirrorPercentage"
        )
        if not 0 <= route.mirror_percent <= 100:
            report.error((*path, "mirrorPercent"), "invalid-percentage", f"{route.mirror_percent} is not in 0..100")
    if route.mirror_percentage is not None:
        value = route.mirror_percentage.value
        if not 0 <= value <= 100:
            report.error((*path, "mirrorPercentage"), "invalid-percentage", f"{value} is not in 0..100")
    if route.mirror is not None:
        check_destination(report, (*path, "mirror"), route.mirror)
    for i, mirror in enumerate(route.mirrors):
        check_destination(report, (*path, "mirrors", i, "destination"), mirror.destination)
        if mirror.percentage is not None and not 0 <= mirror.percentage.value <= 100:
            report.error(
                (*path, "mirrors", i, "percentage"),
                "invalid-percentage",
                f"{mirror.percentage.value} is not in 0..100",
            )


def _check_redirect(report: ResourceReport, redirect: HTTPRedirect, path: Path) -> None:
    if not (redirect.uri or redirect.authority or redirect.port or redirect.derive_port or redirect.scheme):
        report.error(path, "empty-redirect", "a redirect must change the uri, authority, scheme or port")
    if redirect.redirect_code and redirect.redirect_code not in REDIRECT_CODES:
        report.error(
            (*path, "redirectCode"),
            "invalid-redirect-code",
            f"{redirect.redirect_code} is not a redirect Envoy can send (301, 302, 303, 307 or 308)",
        )
    if redirect.scheme and redirect.scheme not in ("http", "https"):
        report.error((*path, "scheme"), "invalid-redirect-scheme", "the redirect scheme must be http or https")
    if redirect.port:
        check_port(report, (*path, "port"), redirect.port)
    if redirect.port and redirect.derive_port:
        report.error((*path, "derivePort"), "conflicting-fields", "give either port or derivePort, not both")


def _check_direct_response(report: ResourceReport, response: HTTPDirectResponse, path: Path) -> None:
    check_http_status(report, (*path, "status"), response.status)
    body = response.body
    if body is None:
        return
    if body.string is not None and body.bytes is not None:
        report.error((*path, "body"), "conflicting-fields", "give either body.string or body.bytes, not both")
    size = len(body.string.encode("utf-8", "surrogatepass")) if body.string is not None else 0
    if body.bytes is not None:
        try:
            size = len(base64.b64decode(body.bytes, validate=True))
        except (binascii.Error, ValueError):
            report.error((*path, "body", "bytes"), "invalid-base64", "body.bytes must be base64-encoded")
    if size > MAX_DIRECT_BODY:
        report.error((*path, "body"), "direct-response-too-large", "a direct response body must be under 1 MiB")
    elif size > LARGE_DIRECT_BODY:
        report.warning((*path, "body"), "direct-response-large", "a direct response body over 100 KiB slows updates")


def _check_retries(report: ResourceReport, retries: HTTPRetry, path: Path) -> None:
    if retries.attempts < 0:
        report.error((*path, "attempts"), "invalid-retries", "attempts cannot be negative")
    if retries.attempts == 0 and (
        retries.per_try_timeout is not None or retries.retry_on or retries.retry_remote_localities is not None
    ):
        report.error(
            (*path, "attempts"),
            "invalid-retries",
            "retries are disabled (attempts: 0) but other retry settings are given; set attempts or remove them",
        )
    check_duration(report, (*path, "perTryTimeout"), retries.per_try_timeout)
    check_duration(report, (*path, "backoff"), retries.backoff)
    if retries.retry_on:
        for policy in retries.retry_on.split(","):
            if policy not in RETRY_ON_POLICIES and not is_known_http_status(policy):
                report.error(
                    (*path, "retryOn"),
                    "invalid-retry-on",
                    f"{policy!r} is not a retryOn policy (e.g. 5xx, gateway-error, connect-failure, or a status "
                    "code); separate policies with ',' and no spaces",
                )


def _check_rewrite(report: ResourceReport, rewrite: HTTPRewrite, path: Path) -> None:
    regex_rewrite = rewrite.uri_regex_rewrite
    if rewrite.uri and regex_rewrite is not None:
        report.error(path, "conflicting-fields", "give either rewrite.uri or rewrite.uriRegexRewrite, not both")
    if not rewrite.uri and regex_rewrite is None and not rewrite.authority:
        report.error(path, "empty-rewrite", "a rewrite must set uri, uriRegexRewrite or authority")
    if regex_rewrite is not None:
        if not regex_rewrite.match or not regex_rewrite.rewrite:
            report.error((*path, "uriRegexRewrite"), "invalid-rewrite", "uriRegexRewrite needs both match and rewrite")
        if regex_rewrite.match:
            check_regex(report, (*path, "uriRegexRewrite", "match"), regex_rewrite.match)
