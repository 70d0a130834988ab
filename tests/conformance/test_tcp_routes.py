"""Opaque TCP through a real Envoy: tcp_proxy from VirtualService `tcp` routes, istio.io "TCP Traffic Shifting",
port matches, istiod's first-VirtualService-wins rule, and a TCP server with no route opening no port."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from reconciler.cli.localrun import free_port
from reconciler.translate.snapshot import LISTENER
from tests.conformance.gateway_manifests import documents, gateway_manifest, server, service, virtual_service
from tests.conformance.harness import XdsHarness
from tests.conformance.l4_upstreams import EchoTcpServer, tcp_exchange

ECHO = "tcp-echo.internal"


@pytest.fixture(scope="module")
def echoes() -> Iterator[dict[str, EchoTcpServer]]:
    """istio's tcp-echo sample: v1 prefixes its answers with `one`, v2 with `two`."""
    servers = {version: EchoTcpServer(name).start() for version, name in (("v1", "one"), ("v2", "two"))}
    yield servers
    for upstream in servers.values():
        upstream.stop()


def tcp_echo(echoes: dict[str, EchoTcpServer]) -> str:
    return service(ECHO, {version: s.port for version, s in echoes.items()}, port=9000)


def weighted(v1: int, v2: int, name: str = "tcp-echo", match: str = "") -> str:
    rule = (
        f"  - {match}route:\n"
        f"    - {{destination: {{host: {ECHO}, subset: v1}}, weight: {v1}}}\n"
        f"    - {{destination: {{host: {ECHO}, subset: v2}}, weight: {v2}}}"
    )
    return virtual_service(name, "['*']", "  tcp:\n" + rule)


def test_tcp_traffic_shifting(gateway: XdsHarness, echoes: dict[str, EchoTcpServer]) -> None:
    """istio.io "TCP Traffic Shifting": all traffic to v1, then 80% v1 / 20% v2 by tcp_proxy weighted clusters."""
    port = free_port()
    tcp_gateway = gateway_manifest(server(port, "TCP", "['*']"))
    gateway.apply(documents(tcp_gateway, tcp_echo(echoes), weighted(100, 0)))
    assert {tcp_exchange(port, "x") for _ in range(20)} == {"one x"}

    gateway.apply(documents(tcp_gateway, tcp_echo(echoes), weighted(80, 20)))
    total = 300
    counts = Counter(tcp_exchange(port, "x").split()[0] for _ in range(total))
    # Binomial(300, 0.2): 4 standard deviations keeps this stable and still catches a wrong split.
    sigma = (total * 0.8 * 0.2) ** 0.5
    assert abs(counts["two"] - total * 0.2) <= 4 * sigma, counts
    assert counts["one"] + counts["two"] == total


def test_tcp_rules_pick_by_port(gateway: XdsHarness, echoes: dict[str, EchoTcpServer]) -> None:
    first, second = free_port(), free_port()
    body = (
        "  tcp:\n"
        f"  - match: [{{port: {first}}}]\n"
        f"    route: [{{destination: {{host: {ECHO}, subset: v1}}}}]\n"
        f"  - match: [{{port: {second}}}]\n"
        f"    route: [{{destination: {{host: {ECHO}, subset: v2}}}}]"
    )
    gateway.apply(
        documents(
            gateway_manifest(server(first, "TCP", "['*']", name="tcp-a"), server(second, "TCP", "['*']", name="tcp-b")),
            tcp_echo(echoes),
            virtual_service("tcp-echo", "['*']", body),
        )
    )
    assert tcp_exchange(first, "a") == "one a"
    assert tcp_exchange(second, "b") == "two b"


def test_the_first_virtual_service_with_a_matching_tcp_rule_wins(
    gateway: XdsHarness, echoes: dict[str, EchoTcpServer]
) -> None:
    """istiod uses only the first VirtualService (by name here) with a matching `tcp` rule; the later one is ignored."""
    port = free_port()
    gateway.apply(
        documents(
            gateway_manifest(server(port, "TCP", "['*']")),
            tcp_echo(echoes),
            weighted(0, 100, name="b-second"),
            weighted(100, 0, name="a-first"),
        )
    )
    assert {tcp_exchange(port) for _ in range(10)} == {"one hello"}


def test_a_tcp_server_without_a_route_opens_no_port(gateway: XdsHarness, echoes: dict[str, EchoTcpServer]) -> None:
    routed, unrouted = free_port(), free_port()
    snapshot = gateway.apply(
        documents(
            gateway_manifest(
                server(routed, "TCP", "['*']", name="routed"), server(unrouted, "TCP", "['*']", name="idle")
            ),
            tcp_echo(echoes),
            weighted(100, 0, match=f"match: [{{port: {routed}}}]\n    "),
        )
    )
    assert list(snapshot.of_type(LISTENER)) == [f"0.0.0.0_{routed}"]
    assert tcp_exchange(routed) == "one hello"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", unrouted), timeout=5).close()


def test_bind_gives_the_listener_its_own_address_and_name(
    gateway: XdsHarness, echoes: dict[str, EchoTcpServer]
) -> None:
    port = free_port()
    bound_server = server(port, "TCP", "['*']").replace("hosts:", "bind: 127.0.0.1, hosts:")
    snapshot = gateway.apply(documents(gateway_manifest(bound_server), tcp_echo(echoes), weighted(0, 100)))
    assert list(snapshot.of_type(LISTENER)) == [f"127.0.0.1_{port}"]
    assert tcp_exchange(port) == "two hello"
