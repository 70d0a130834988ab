"""HTTP basics through a real Envoy: host routing, path prefix vs exact, weighted split, 404 for unknown hosts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from reconciler.cli.localrun import EchoServer, free_port
from tests.conformance.harness import XdsHarness


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, EchoServer]]:
    servers = {name: EchoServer(name).start() for name in ("v1", "v2")}
    yield servers
    for server in servers.values():
        server.stop()


def service_entries(backends: dict[str, EchoServer]) -> str:
    endpoints = ", ".join(
        f"{{address: 127.0.0.1, ports: {{http: {s.port}}}, labels: {{version: {name}}}}}"
        for name, s in backends.items()
    )
    return f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: reviews}}
    spec:
      hosts: [reviews.internal]
      ports: [{{number: 80, name: http, protocol: HTTP}}]
      resolution: STATIC
      endpoints: [{endpoints}]
    ---
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: reviews}}
    spec:
      host: reviews.internal
      subsets:
      - {{name: v1, labels: {{version: v1}}}}
      - {{name: v2, labels: {{version: v2}}}}
    """


def gateway_manifest(port: int) -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: gw}}
    spec:
      selector: {{app: conformance-gateway}}
      servers:
      - port: {{number: {port}, name: http, protocol: HTTP}}
        hosts: ["*"]
    """


def get(port: int, path: str = "/", host: str = "reviews.example.com", **headers: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host, **headers}, timeout=5)


def test_prefix_exact_and_unknown_host(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    gateway.apply(
        gateway_manifest(port)
        + "---"
        + service_entries(backends)
        + """
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews}
    spec:
      hosts: [reviews.example.com]
      gateways: [gw]
      http:
      - match: [{uri: {exact: /v2}}]
        route: [{destination: {host: reviews.internal, subset: v2}}]
      - match: [{uri: {prefix: /v1}}]
        route: [{destination: {host: reviews.internal, subset: v1}}]
    """
    )
    assert get(port, "/v2").headers["x-upstream"] == "v2"
    assert get(port, "/v2/more").status_code == 404  # exact means exact
    assert get(port, "/v1").headers["x-upstream"] == "v1"
    assert get(port, "/v1beta").headers["x-upstream"] == "v1"  # a prefix is a plain string prefix (Istio)
    assert get(port, "/v1", host="unknown.example.com").status_code == 404


@pytest.mark.parametrize(("v1_weight", "v2_weight"), [(50, 50), (80, 20)])
def test_weighted_traffic_shifting(
    gateway: XdsHarness, backends: dict[str, EchoServer], v1_weight: int, v2_weight: int
) -> None:
    port = free_port()
    gateway.apply(
        gateway_manifest(port)
        + "---"
        + service_entries(backends)
        + f"""
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: reviews}}
    spec:
      hosts: [reviews.example.com]
      gateways: [gw]
      http:
      - route:
        - {{destination: {{host: reviews.internal, subset: v1}}, weight: {v1_weight}}}
        - {{destination: {{host: reviews.internal, subset: v2}}, weight: {v2_weight}}}
    """
    )
    total = 400
    counts = Counter(get(port).headers["x-upstream"] for _ in range(total))
    # Binomial: 4 standard deviations around the expected share keeps this stable yet meaningful.
    expected = total * v1_weight / 100
    sigma = (total * v1_weight / 100 * v2_weight / 100) ** 0.5
    assert abs(counts["v1"] - expected) <= 4 * sigma, counts
    assert counts["v1"] + counts["v2"] == total
