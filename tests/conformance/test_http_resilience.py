"""Request timeouts and retries through a real Envoy (istio.io tasks "request timeouts" and "retries"),
including istiod's default retry policy when a rule sets none."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from reconciler.cli.localrun import free_port
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import (
    ScriptedUpstream,
    active_route_config,
    apply,
    documents,
    get,
    http_gateway,
    http_routes,
    refusing_port,
    service,
    started,
)

HOST = "app.example.com"
ROUTE = "route: [{destination: {host: app.internal}}]"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with started("v1") as servers:
        yield servers["v1"]


def serve(harness: XdsHarness, upstream: ScriptedUpstream, rule: str, extra_endpoint: str = "") -> int:
    """One rule (YAML lines under `- `) for app.example.com → app.internal."""
    port = free_port()
    svc = service("app.internal", {"v1": upstream})
    if extra_endpoint:
        svc = svc.replace("endpoints: [", f"endpoints: [{extra_endpoint}, ")
    vs = http_routes("app", f"[{HOST}]", f"  - {rule}\n")
    apply(harness, documents(http_gateway(port), svc, vs), port)
    return port


def scripted(port: int, **script: str) -> tuple[requests.Response, str]:
    """A request with a fresh x-request-key and the given script headers; returns the response and key."""
    key = uuid.uuid4().hex
    return get(port, x_request_key=key, **script), key


def test_request_timeout(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(gateway, upstream, f"timeout: 300ms\n    {ROUTE}")
    started = time.monotonic()
    response, _ = scripted(port, x_sleep_ms="1000")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.text == "upstream request timeout"
    assert 0.25 < elapsed < 0.9
    assert scripted(port, x_sleep_ms="100")[0].status_code == 200


def test_no_timeout_by_default(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    """istiod writes `timeout: 0s` (disabled) on every route; Envoy's own default would be 15s."""
    port = serve(gateway, upstream, ROUTE)
    assert gateway.envoy is not None
    route = active_route(gateway, port)
    assert route["route"]["timeout"] == "0s"
    assert scripted(port, x_sleep_ms="300")[0].status_code == 200


def test_retries_recover_from_failures(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(gateway, upstream, f"retries: {{attempts: 3, retryOn: 5xx}}\n    {ROUTE}")
    response, key = scripted(port, x_fail_first="2")
    assert response.status_code == 200
    assert upstream.attempts(key) == 3
    # include_request_attempt_count: the upstream sees which attempt this was.
    assert response.json()["headers"]["x-envoy-attempt-count"] == "3"
    response, key = scripted(port, x_fail_first="4")
    assert response.status_code == 503
    assert upstream.attempts(key) == 4  # 1 try + 3 retries


def test_numeric_retry_on_becomes_retriable_status_codes(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(gateway, upstream, f"retries: {{attempts: 2, retryOn: '503,connect-failure'}}\n    {ROUTE}")
    response, key = scripted(port, x_fail_first="1")
    assert (response.status_code, upstream.attempts(key)) == (200, 2)
    response, key = scripted(port, x_status="502")
    assert (response.status_code, upstream.attempts(key)) == (502, 1)  # 502 is not in the list
    policy = active_route(gateway, port)["route"]["retry_policy"]
    assert policy["retry_on"] == "connect-failure,retriable-status-codes"
    assert policy["retriable_status_codes"] == [503]


def test_default_policy_does_not_retry_503(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    """istiod's default retries connect failures, refused streams, ... but not a 503 answer."""
    port = serve(gateway, upstream, ROUTE)
    response, key = scripted(port, x_fail_first="1")
    assert (response.status_code, upstream.attempts(key)) == (503, 1)


def test_default_policy_retries_connect_failures_on_another_host(
    gateway: XdsHarness, upstream: ScriptedUpstream
) -> None:
    """One endpoint refuses connections: the default policy (2 retries, previous-hosts predicate) hides it."""
    with refusing_port() as refusing:
        dead = f"{{address: 127.0.0.1, ports: {{http: {refusing}}}, labels: {{version: dead}}}}"
        port = serve(gateway, upstream, ROUTE, extra_endpoint=dead)
        assert all(get(port).status_code == 200 for _ in range(20))
        port = serve(gateway, upstream, f"retries: {{attempts: 0}}\n    {ROUTE}", extra_endpoint=dead)
        assert any(get(port).status_code == 503 for _ in range(20))  # no retries: the dead host shows


def test_per_try_timeout(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(
        gateway, upstream, f"retries: {{attempts: 2, perTryTimeout: 200ms, retryOn: gateway-error}}\n    {ROUTE}"
    )
    started = time.monotonic()
    response, key = scripted(port, x_sleep_ms="1000", x_slow_first="1")
    assert response.status_code == 200
    assert upstream.attempts(key) == 2
    assert time.monotonic() - started < 0.9  # the slow first try was cut at 200ms


def test_retry_knobs_reach_envoy(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    rule = (
        "retries: {attempts: 4, retryOn: 'reset,429', backoff: 25ms, retryRemoteLocalities: true, "
        f"retryIgnorePreviousHosts: false}}\n    {ROUTE}"
    )
    port = serve(gateway, upstream, rule)
    policy = active_route(gateway, port)["route"]["retry_policy"]
    assert policy["num_retries"] == 4
    assert policy["retry_on"] == "reset,retriable-status-codes"
    assert policy["retriable_status_codes"] == [429]
    assert policy["retry_back_off"]["base_interval"] == "0.025s"
    assert policy["retry_priority"]["name"] == "envoy.retry_priorities.previous_priorities"
    assert "retry_host_predicate" not in policy
    assert policy["host_selection_retry_max_attempts"] == "5"


def active_route(harness: XdsHarness, port: int) -> Any:
    return active_route_config(harness, port)["virtual_hosts"][0]["routes"][0]
