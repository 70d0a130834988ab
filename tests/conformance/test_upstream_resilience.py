"""DestinationRule resilience through a real Envoy: outlier detection ejects a failing endpoint, connection-pool
limits shed load with 503 + `x-envoy-overloaded`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from reconciler.cli.localrun import EchoServer, free_port
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import ScriptedUpstream, documents, get, http_gateway, refusing_port
from tests.conformance.upstream_support import endpoint, route_all, static_entry

HOST = "api.example.com"


@pytest.fixture(scope="module")
def healthy() -> Iterator[EchoServer]:
    server = EchoServer("healthy").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def failing() -> Iterator[EchoServer]:
    server = EchoServer("failing", status=503).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow() -> Iterator[ScriptedUpstream]:
    server = ScriptedUpstream("slow").start()
    yield server
    server.stop()


def cluster_stat(gateway: XdsHarness, stat: str, host: str = "api.internal") -> int:
    """A counter of cluster outbound|80||<host> (counters outlive config changes: compare deltas)."""
    assert gateway.envoy is not None
    name = host.replace(".", r"\.")
    return sum(gateway.envoy.stats(rf"^cluster\.outbound\|80\|\|{name}\.{stat}$").values())


def with_rule(entry: str, policy: str, host: str = "api.internal") -> str:
    return documents(
        entry,
        f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api}}
spec:
  host: {host}
  trafficPolicy: {policy}
""",
    )


@pytest.mark.parametrize("bad", ["refuses-connections", "answers-503"])
def test_outlier_detection_ejects_the_bad_endpoint(
    gateway: XdsHarness, healthy: EchoServer, failing: EchoServer, bad: str
) -> None:
    with refusing_port() as refusing:  # held, so no listener can take it and answer
        port = free_port()
        service = f"{bad}.internal"  # a cluster of its own: Envoy keeps ejection state per cluster across updates
        refuses = f"{{address: 127.0.0.1, ports: {{http: {refusing}}}}}"
        bad_endpoint = refuses if bad == "refuses-connections" else endpoint(failing)
        policy = "{outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, "
        policy += "maxEjectionPercent: 100}}"
        gateway.apply(
            documents(
                http_gateway(port),
                with_rule(static_entry(service, [endpoint(healthy), bad_endpoint]), policy, service),
                route_all(HOST, service),  # no retries: a request that reaches the bad endpoint fails
            )
        )
        ejected_before = cluster_stat(gateway, "outlier_detection.ejections_enforced_total", service)
        statuses = Counter(get(port, host=HOST).status_code for _ in range(40))
        # The first request the bad endpoint gets fails and ejects it; without ejection about half would fail.
        assert statuses[200] >= 39, statuses
        assert [get(port, host=HOST).headers.get("x-upstream") for _ in range(20)] == ["healthy"] * 20
        assert cluster_stat(gateway, "outlier_detection.ejections_enforced_total", service) == ejected_before + 1


def test_connection_pool_limits_overflow_with_503(gateway: XdsHarness, slow: ScriptedUpstream) -> None:
    port = free_port()
    policy = "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}"
    gateway.apply(
        documents(
            http_gateway(port),
            with_rule(static_entry("api.internal", [endpoint(slow)]), policy),
            route_all(HOST, "api.internal"),
        )
    )
    overflow_before = cluster_stat(gateway, "upstream_rq_pending_overflow")

    def call(_: int) -> requests.Response:
        return get(port, host=HOST, x_sleep_ms="700")

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(call, range(6)))
    served = [r for r in responses if r.status_code == 200]
    shed = [r for r in responses if r.status_code == 503 and r.headers.get("x-envoy-overloaded") == "true"]
    # One request on the only connection, one waiting for it; the rest are shed at once.
    assert len(served) + len(shed) == 6, [(r.status_code, dict(r.headers)) for r in responses]
    assert 1 <= len(served) <= 2
    assert cluster_stat(gateway, "upstream_rq_pending_overflow") == overflow_before + len(shed)


def test_without_limits_nothing_is_shed(gateway: XdsHarness, slow: ScriptedUpstream) -> None:
    port = free_port()
    gateway.apply(
        documents(http_gateway(port), static_entry("api.internal", [endpoint(slow)]), route_all(HOST, "api.internal"))
    )
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: get(port, host=HOST, x_sleep_ms="300").status_code, range(6)))
    assert statuses == [200] * 6
