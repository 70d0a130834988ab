"""ServiceEntry resolution through a real Envoy: DNS (STRICT_DNS) and DNS_ROUND_ROBIN (LOGICAL_DNS) resolving
the real name `localhost`, DNS subsets, and NONE falling back to endpoints (EDS) on a gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.cli.localrun import EchoServer, free_port
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import documents, http_gateway
from tests.conformance.upstream_support import route_all, upstream_counts

HOST = "dns.example.com"


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, EchoServer]]:
    servers = {name: EchoServer(name).start() for name in ("a", "b")}
    yield servers
    for server in servers.values():
        server.stop()


def entry(resolution: str, endpoints: str, host: str = "named.internal", port: int = 80) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: named}}
spec:
  hosts: [{host}]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: {resolution}
  endpoints: [{endpoints}]
"""


@pytest.mark.parametrize("resolution", ["DNS", "DNS_ROUND_ROBIN"])
def test_endpoint_name_resolves(gateway: XdsHarness, backends: dict[str, EchoServer], resolution: str) -> None:
    port = free_port()
    endpoints = f"{{address: localhost, ports: {{http: {backends['a'].port}}}}}"
    gateway.apply(documents(http_gateway(port), entry(resolution, endpoints), route_all(HOST, "named.internal")))
    assert upstream_counts(port, HOST, 5) == {"a": 5}


def test_host_resolves_itself_without_endpoints(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    # Envoy's resolver answers *.localhost with the loopback address (RFC 6761), like `localhost` itself.
    # The entry's only port is the backend's, so the destination needs no port (istiod's single-port rule).
    gateway.apply(
        documents(
            http_gateway(port),
            entry("DNS", "", host="echo.localhost", port=backends["b"].port),
            route_all(HOST, "echo.localhost"),
        )
    )
    assert upstream_counts(port, HOST, 5) == {"b": 5}


def test_strict_dns_spreads_over_every_endpoint(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    endpoints = ", ".join(
        f"{{address: localhost, ports: {{http: {s.port}}}, labels: {{site: {name}}}}}" for name, s in backends.items()
    )
    gateway.apply(
        documents(
            http_gateway(port),
            entry("DNS", endpoints),
            """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: named}
spec:
  host: named.internal
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets: [{name: only-b, labels: {site: b}}]
""",
            f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: named}}
spec:
  hosts: [{HOST}]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /b}}}}]
    route: [{{destination: {{host: named.internal, subset: only-b}}}}]
  - route: [{{destination: {{host: named.internal}}}}]
""",
        )
    )
    assert upstream_counts(port, HOST, 10) == {"a": 5, "b": 5}
    assert upstream_counts(port, HOST, 5, path="/b") == {"b": 5}


def test_resolution_none_uses_the_endpoints(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    endpoints = f"{{address: 127.0.0.1, ports: {{http: {backends['a'].port}}}}}"
    # istiod: "gateways fall back to EDS" for NONE; the endpoints are all a gateway can forward to.
    gateway.apply(documents(http_gateway(port), entry("NONE", endpoints), route_all(HOST, "named.internal")))
    assert upstream_counts(port, HOST, 3) == {"a": 3}
