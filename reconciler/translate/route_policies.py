"""Per-route policies: retries (istiod's retry.ConvertPolicy), fault injection and CORS (per-filter configs)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from reconciler.manifests.model import CorsPolicy, HTTPFaultInjection, HTTPRetry, Percent, StringMatch
from reconciler.manifests.status_codes import GRPC_STATUS_CODES, is_known_http_status
from reconciler.translate.common import duration, pack, set_duration
from reconciler.translate.route_match import string_matcher

# istiod's default retry policy on every route that sets none (route/retry/retry.go, 503 excluded by default).
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY_ATTEMPTS = 2
HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5
RETRIABLE_STATUS_CODES = "retriable-status-codes"


PREVIOUS_HOSTS_PREDICATE = rc.RetryPolicy.RetryHostPredicate(
    name="envoy.retry_host_predicates.previous_hosts", typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate())
)
PREVIOUS_PRIORITIES = rc.RetryPolicy.RetryPriority(
    name="envoy.retry_priorities.previous_priorities",
    typed_config=pack(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2)),
)


def apply_retry_policy(action: rc.RouteAction, retries: HTTPRetry | None, consistent_hash: bool = False) -> None:
    """Set the policy of `retries`, istiod's default when unset, none when `attempts` is 0 (retries disabled).

    With a consistent-hash destination the retry must stay on the hashed host, so istiod leaves out the
    previous-hosts predicate there.
    """
    if retries is None:
        action.retry_policy.CopyFrom(_DEFAULT_POLICIES[consistent_hash])
    elif retries.attempts > 0:
        _fill_retry_policy(action.retry_policy, retries, consistent_hash)


def _fill_retry_policy(policy: rc.RetryPolicy, retries: HTTPRetry | None, consistent_hash: bool) -> None:
    policy.retry_on = DEFAULT_RETRY_ON
    policy.num_retries.value = DEFAULT_RETRY_ATTEMPTS
    policy.host_selection_retry_max_attempts = HOST_SELECTION_RETRY_MAX_ATTEMPTS
    ignore_previous_hosts = not consistent_hash
    if retries is not None:
        policy.num_retries.value = retries.attempts
        if retries.retry_on:
            tokens, codes = _split_retry_on(retries.retry_on)
            if codes and RETRIABLE_STATUS_CODES not in tokens:
                tokens.append(RETRIABLE_STATUS_CODES)
            policy.retry_on = ",".join(tokens)
            policy.retriable_status_codes.extend(codes)
        if retries.per_try_timeout is not None:
            set_duration(policy.per_try_timeout, retries.per_try_timeout)
        if retries.retry_ignore_previous_hosts is not None:
            ignore_previous_hosts = retries.retry_ignore_previous_hosts
        if retries.retry_remote_localities:
            policy.retry_priority.CopyFrom(PREVIOUS_PRIORITIES)
        if retries.backoff is not None:
            set_duration(policy.retry_back_off.base_interval, retries.backoff)
    if ignore_previous_hosts:
        policy.retry_host_predicate.append(PREVIOUS_HOSTS_PREDICATE)


def _default_policy(consistent_hash: bool) -> rc.RetryPolicy:
    policy = rc.RetryPolicy()
    _fill_retry_policy(policy, None, consistent_hash)
    return policy


# istiod's default, built once: most routes set no retries, and copying a policy in costs a fraction of
# building it. Only ever copied from, never handed out.
_DEFAULT_POLICIES = {hashed: _default_policy(hashed) for hashed in (False, True)}


def _split_retry_on(retry_on: str) -> tuple[list[str], list[int]]:
    """Numeric HTTP status codes in `retryOn` become retriable_status_codes; other tokens stay (istiod)."""
    tokens: list[str] = []
    codes: list[int] = []
    for raw in retry_on.split(","):
        token = raw.strip()
        if is_known_http_status(token):
            codes.append(int(token))
        elif token:
            tokens.append(token)
    return tokens, codes


def fractional_percent(percent: Percent) -> percent_pb2.FractionalPercent:
    """Istio's Percent (a double in [0, 100]) in millionths, as istiod converts it."""
    return percent_pb2.FractionalPercent(
        numerator=int(percent.value * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def whole_percent(value: int) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(numerator=value, denominator=percent_pb2.FractionalPercent.HUNDRED)


def fault_config(fault: HTTPFaultInjection) -> fault_pb2.HTTPFault:
    """Per-route config of the fault filter.

    An unset percentage stays unset, as istiod leaves it: Envoy then faults no request (verified in
    tests/conformance/test_http_fault.py), which is also what Istio's docs promise.
    """
    out = fault_pb2.HTTPFault()
    delay = fault.delay
    if delay is not None and delay.fixed_delay is not None:
        out.delay.fixed_delay.CopyFrom(duration(delay.fixed_delay))
        out.delay.percentage.CopyFrom(
            fractional_percent(delay.percentage) if delay.percentage is not None else whole_percent(delay.percent)
        )
    abort = fault.abort
    if abort is not None and (abort.http_status or abort.grpc_status):
        if abort.http_status:
            out.abort.http_status = abort.http_status
        elif abort.grpc_status:
            out.abort.grpc_status = GRPC_STATUS_CODES[abort.grpc_status]
        if abort.percentage is not None:
            out.abort.percentage.CopyFrom(fractional_percent(abort.percentage))
    return out


def cors_config(policy: CorsPolicy) -> cors_pb2.CorsPolicy:
    """Per-route config of the CORS filter (istiod's TranslateCORSPolicy)."""
    origins = (
        [string_matcher(origin) for origin in policy.allow_origins]
        if policy.allow_origins
        else [
            string_matcher(StringMatch(exact=origin)) for origin in policy.allow_origin
        ]  # the deprecated exact-only list
    )
    out = cors_pb2.CorsPolicy(
        allow_origin_string_match=origins,
        allow_methods=",".join(policy.allow_methods),
        allow_headers=",".join(policy.allow_headers),
        expose_headers=",".join(policy.expose_headers),
        # Envoy >= 1.30 drops unmatched preflights by default; Istio keeps the older "forward" unless IGNORE.
        forward_not_matching_preflights=wrappers_pb2.BoolValue(value=policy.unmatched_preflights != "IGNORE"),
        filter_enabled=base_pb2.RuntimeFractionalPercent(default_value=whole_percent(100)),
    )
    if policy.max_age is not None:
        out.max_age = str(policy.max_age.nanos // 1_000_000_000)
    if policy.allow_credentials is not None:
        out.allow_credentials.CopyFrom(wrappers_pb2.BoolValue(value=policy.allow_credentials))
    return out
