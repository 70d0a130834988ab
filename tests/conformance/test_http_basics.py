"""HTTP basics through a real Envoy: host routing, path prefix vs exact, weighted split, 404 for unknown hosts."""

from __future__ import annotations

from collections import Counter

import pytest

from reconciler.cli.localrun import EchoServer
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import get, http_routes, serve_http

HOST = "reviews.example.com"


def serve(harness: XdsHarness, backends: dict[str, EchoServer], rules: str) -> int:
    return serve_http(harness, "reviews.internal", backends, http_routes("reviews", f"[{HOST}]", rules))


def test_prefix_exact_and_unknown_host(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    rules = """  - match: [{uri: {exact: /v2}}]
    route: [{destination: {host: reviews.internal, subset: v2}}]
  - match: [{uri: {prefix: /v1}}]
    route: [{destination: {host: reviews.internal, subset: v1}}]
"""
    port = serve(gateway, backends, rules)
    assert get(port, "/v2", host=HOST).headers["x-upstream"] == "v2"
    assert get(port, "/v2/more", host=HOST).status_code == 404  # exact means exact
    assert get(port, "/v1", host=HOST).headers["x-upstream"] == "v1"
    assert get(port, "/v1beta", host=HOST).headers["x-upstream"] == "v1"  # a prefix is a plain string prefix (Istio)
    assert get(port, "/v1", host="unknown.example.com").status_code == 404


@pytest.mark.parametrize(("v1_weight", "v2_weight"), [(50, 50), (80, 20)])
def test_weighted_traffic_shifting(
    gateway: XdsHarness, backends: dict[str, EchoServer], v1_weight: int, v2_weight: int
) -> None:
    rules = f"""  - route:
    - {{destination: {{host: reviews.internal, subset: v1}}, weight: {v1_weight}}}
    - {{destination: {{host: reviews.internal, subset: v2}}, weight: {v2_weight}}}
"""
    port = serve(gateway, backends, rules)
    total = 400
    counts = Counter(get(port, host=HOST).headers["x-upstream"] for _ in range(total))
    # Binomial: 4 standard deviations around the expected share keeps this stable yet meaningful.
    expected = total * v1_weight / 100
    sigma = (total * v1_weight / 100 * v2_weight / 100) ** 0.5
    assert abs(counts["v1"] - expected) <= 4 * sigma, counts
    assert counts["v1"] + counts["v2"] == total
