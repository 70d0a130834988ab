"""DestinationRule load balancing through a real Envoy: round robin, endpoint weights, consistent hashing by
header / cookie / query parameter, and the subset and port-level overrides of istiod's policy merge."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.cli.localrun import EchoServer, free_port
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import documents, get, http_gateway
from tests.conformance.upstream_support import endpoint, route_all, static_entry, upstream_counts

HOST = "shop.example.com"
NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, EchoServer]]:
    servers = {name: EchoServer(name).start() for name in NAMES}
    yield servers
    for server in servers.values():
        server.stop()


def shop(backends: dict[str, EchoServer], policy: str, weights: dict[str, int] | None = None) -> str:
    """shop.internal over all backends, with `policy` as the DestinationRule's trafficPolicy."""
    endpoints = [endpoint(s, (weights or {}).get(name, 0), pool="main") for name, s in backends.items()]
    return documents(
        static_entry("shop.internal", endpoints),
        f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop}}
spec:
  host: shop.internal
  trafficPolicy: {policy}
""",
    )


def test_round_robin_takes_turns(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    gateway.apply(
        documents(
            http_gateway(port),
            shop(backends, "{loadBalancer: {simple: ROUND_ROBIN}}"),
            route_all(HOST, "shop.internal"),
        )
    )
    # One Envoy worker, one request at a time: round robin visits every endpoint in turn.
    assert upstream_counts(port, HOST, 60) == {"a": 20, "b": 20, "c": 20}


def test_endpoint_weights_share_traffic(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    weights = {"a": 1, "b": 3, "c": 0}  # 0: unset, which means 1
    gateway.apply(
        documents(
            http_gateway(port),
            shop(backends, "{loadBalancer: {simple: ROUND_ROBIN}}", weights),
            route_all(HOST, "shop.internal"),
        )
    )
    total = 500
    counts = upstream_counts(port, HOST, total)
    # Shares 1:3:1. Four binomial standard deviations keep this stable while ignoring weights (1:1:1) fails.
    for name, share in (("a", 0.2), ("b", 0.6), ("c", 0.2)):
        sigma = (total * share * (1 - share)) ** 0.5
        assert abs(counts[name] - total * share) <= 4 * sigma, counts


def test_consistent_hash_by_header_sticks(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    gateway.apply(
        documents(
            http_gateway(port),
            shop(backends, "{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}"),
            route_all(HOST, "shop.internal"),
        )
    )
    chosen = {}
    for user in (f"user-{i}" for i in range(12)):
        counts = upstream_counts(port, HOST, 5, x_user=user)
        assert len(counts) == 1, (user, counts)  # every request of one user lands on one endpoint
        chosen[user] = next(iter(counts))
    assert len(set(chosen.values())) >= 2, chosen  # and the users are spread over the endpoints


def test_consistent_hash_by_cookie_sets_and_follows_it(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    gateway.apply(
        documents(
            http_gateway(port),
            shop(backends, "{loadBalancer: {consistentHash: {httpCookie: {name: sticky, ttl: 60s}}}}"),
            route_all(HOST, "shop.internal"),
        )
    )
    first = get(port, host=HOST)
    assert first.status_code == 200
    cookie = first.cookies.get("sticky")
    assert cookie, first.headers  # with a ttl Envoy hands out the cookie itself
    later = upstream_counts(port, HOST, 10, cookie=f"sticky={cookie}")
    assert later == {first.headers["x-upstream"]: 10}


def test_maglev_by_query_parameter_sticks(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    gateway.apply(
        documents(
            http_gateway(port),
            shop(backends, "{loadBalancer: {consistentHash: {httpQueryParameterName: user, maglev: {}}}}"),
            route_all(HOST, "shop.internal"),
        )
    )
    chosen = set()
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        counts = upstream_counts(port, HOST, 5, path=f"/cart?user={user}")
        assert len(counts) == 1, (user, counts)
        chosen |= set(counts)
    assert len(chosen) >= 2


def test_subset_policy_overrides_top_level(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    endpoints = [endpoint(s, pool="main") for s in backends.values()]
    gateway.apply(
        documents(
            http_gateway(port),
            static_entry("shop.internal", endpoints),
            """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop.internal
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - name: sticky
    labels: {pool: main}
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
""",
            f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [{HOST}]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /sticky}}}}]
    route: [{{destination: {{host: shop.internal, subset: sticky}}}}]
  - route: [{{destination: {{host: shop.internal}}}}]
""",
        )
    )
    assert len(upstream_counts(port, HOST, 15, path="/sticky", x_user="alice")) == 1
    assert upstream_counts(port, HOST, 15, path="/", x_user="alice") == {"a": 5, "b": 5, "c": 5}


def test_port_level_setting_replaces_policy_on_its_port(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    endpoints = ", ".join(
        f"{{address: 127.0.0.1, ports: {{http: {s.port}, admin: {s.port}}}}}" for s in backends.values()
    )
    gateway.apply(
        documents(
            http_gateway(port),
            f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shop}}
spec:
  hosts: [shop.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 81, name: admin, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{endpoints}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop}}
spec:
  host: shop.internal
  trafficPolicy:
    loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}
    portLevelSettings:
    - port: {{number: 81}}
      loadBalancer: {{simple: ROUND_ROBIN}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [{HOST}]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /admin}}}}]
    route: [{{destination: {{host: shop.internal, port: {{number: 81}}}}}}]
  - route: [{{destination: {{host: shop.internal, port: {{number: 80}}}}}}]
""",
        )
    )
    assert len(upstream_counts(port, HOST, 15, path="/", x_user="alice")) == 1  # port 80: hashed
    assert upstream_counts(port, HOST, 15, path="/admin", x_user="alice") == {"a": 5, "b": 5, "c": 5}
