"""Delta ADS with a real Envoy (`reconciler bootstrap --xds-protocol delta`): sync, update, removal, NACK,
reconnect with initial_resource_versions, and a fleet mixing SotW and delta nodes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import requests
from envoy.config.route.v3 import route_components_pb2, route_pb2

from reconciler.cli.localrun import LOOPBACK, EchoServer, EnvoyProcess, free_port
from reconciler.pipeline import build
from reconciler.translate import TranslateOptions
from reconciler.translate.snapshot import CLUSTER, ROUTE, Snapshot, XdsResource
from reconciler.xds import AdsServer, NodeState, start_grpc_server
from reconciler.xds.delta import DeltaTypeState
from tests.support import wait_for

T = TypeVar("T")
FLEET = "edge"
HOST = "shop.example.test"
WARMING = "listener_manager.total_listeners_warming"


def manifests(port: int, upstreams: dict[str, EchoServer], route_to: str) -> str:
    """A Fleet, a Gateway on `port`, one ServiceEntry per upstream, and HOST routed to `route_to`."""
    services = "".join(
        f"""
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [{name}.shop.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {server.port}}}}}]
"""
        for name, server in upstreams.items()
    )
    return f"""
apiVersion: reconciler/v1
kind: Fleet
metadata: {{name: {FLEET}}}
spec: {{selector: {{app: edge}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge, namespace: shop}}
spec:
  selector: {{app: edge}}
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop, namespace: shop}}
spec:
  hosts: [{HOST}]
  gateways: [edge]
  http: [{{route: [{{destination: {{host: {route_to}.shop.internal}}}}]}}]
{services}"""


TIGHTER_B = """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: shop}
spec:
  host: b.shop.internal
  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 3s}}}
"""


def snapshot_of(text: str) -> Snapshot:
    result = build({"edge.yaml": text.encode()}, TranslateOptions(default_bind=LOOPBACK))
    assert result.ok, [str(f) for f in result.findings]
    return result.snapshots[FLEET]


class Control:
    """An AdsServer on its own loop thread: what the daemon runs, without git."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ads: AdsServer | None = None
        self.server: grpc.aio.Server | None = None
        self.port = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def on_loop(self, fn: Callable[[AdsServer], T]) -> T:
        async def call() -> T:
            assert self.ads is not None
            return fn(self.ads)

        return self.run(call())

    def start(self, snapshot: Snapshot, port: int = 0) -> None:
        async def boot() -> None:
            self.ads = AdsServer()
            self.ads.set_fleet_snapshot(FLEET, snapshot)
            self.ads.set_known_fleets([FLEET])
            self.server, self.port = await start_grpc_server(self.ads, f"{LOOPBACK}:{port}")

        self.run(boot())

    def stop_server(self) -> None:
        if self.server is not None:
            self.run(self.server.stop(grace=0))
            self.server = None

    def serve(self, snapshot: Snapshot) -> None:
        self.on_loop(lambda ads: ads.set_fleet_snapshot(FLEET, snapshot))

    def states(self) -> dict[str, tuple[NodeState, str]]:
        return self.on_loop(lambda ads: {n.node_id: (n.state(), n.synced_version) for n in ads.nodes(FLEET)})

    def synced(self, snapshot: Snapshot, nodes: int = 1) -> bool:
        states = self.states()
        return len(states) == nodes and all(s == (NodeState.SYNCED, snapshot.version) for s in states.values())

    def close(self) -> None:
        self.stop_server()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def control() -> Iterator[Control]:
    control = Control()
    yield control
    control.close()


@pytest.fixture
def envoys(tmp_path: Path) -> Iterator[Callable[..., EnvoyProcess]]:
    started: list[EnvoyProcess] = []

    def start(node: str, xds_port: int, protocol: str = "delta", address: str = LOOPBACK) -> EnvoyProcess:
        envoy = EnvoyProcess(tmp_path, FLEET, node, xds_port, address=address, xds_protocol=protocol)
        started.append(envoy)
        return envoy.start()

    yield start
    for envoy in started:
        envoy.stop()


def answer(address: str, port: int) -> str:
    try:
        response = requests.get(f"http://{address}:{port}/", headers={"Host": HOST}, timeout=1)
    except requests.RequestException:
        return ""
    return response.headers.get("x-upstream", "") if response.status_code == 200 else ""


def clusters(envoy: EnvoyProcess) -> set[str]:
    text = requests.get(f"{envoy.admin_url}/clusters", timeout=2).text
    return {line.split("::", 1)[0] for line in text.splitlines() if line.startswith("outbound|")}


def wait_serving(envoy: EnvoyProcess, port: int, upstream: str) -> None:
    wait_for(lambda: envoy.stats(WARMING).get(WARMING, 1) == 0, timeout=10, interval=0.02, what="listeners warm")
    wait_for(lambda: answer(envoy.address, port) == upstream, timeout=10, interval=0.02, what=f"traffic to {upstream}")


def test_sync_update_and_removal(
    control: Control, upstreams: dict[str, EchoServer], envoys: Callable[..., EnvoyProcess]
) -> None:
    port = free_port()
    first = snapshot_of(manifests(port, upstreams, "a"))
    control.start(first)
    envoy = envoys("edge-1", control.port)
    wait_for(lambda: control.synced(first), timeout=10, interval=0.02, what="the first delta sync")
    wait_serving(envoy, port, "a")
    assert clusters(envoy) == {"outbound|80||a.shop.internal", "outbound|80||b.shop.internal"}

    # Route to b, drop service a (its cluster must leave Envoy: delta `removed_resources`), and change
    # cluster b: an updated cluster warms only on a fresh endpoints response, else Envoy waits 15 s for it.
    second = snapshot_of(manifests(port, {"b": upstreams["b"]}, "b") + TIGHTER_B)
    control.serve(second)
    wait_for(lambda: control.synced(second), timeout=5, interval=0.02, what="the update's ACKs")
    wait_serving(envoy, port, "b")
    wait_for(lambda: clusters(envoy) == {"outbound|80||b.shop.internal"}, timeout=10, what="cluster a removed")


def test_nack_keeps_old_config_serving(
    control: Control, upstreams: dict[str, EchoServer], envoys: Callable[..., EnvoyProcess]
) -> None:
    port = free_port()
    good = snapshot_of(manifests(port, upstreams, "a"))
    control.start(good)
    envoy = envoys("edge-1", control.port)
    wait_for(lambda: control.synced(good), timeout=10, interval=0.02, what="the first delta sync")
    wait_serving(envoy, port, "a")

    # A regex RE2 rejects: validation would stop it, so it is slipped into the snapshot by hand.
    (config,) = (r.message() for r in good.of_type(ROUTE).values())
    assert isinstance(config, route_pb2.RouteConfiguration)
    route = config.virtual_hosts[0].routes.add(name="broken")
    route.match.CopyFrom(route_components_pb2.RouteMatch(safe_regex={"regex": "/api/(unclosed"}))
    route.route.cluster = "outbound|80||b.shop.internal"
    bad = Snapshot.of_resources([*(r for r in good.all_resources() if r.type_url != ROUTE), XdsResource.of(config)])
    control.serve(bad)
    wait_for(lambda: control.states()["edge-1"][0] is NodeState.NACKED, timeout=10, interval=0.02, what="a NACK")
    errors = control.on_loop(lambda ads: ads.nodes(FLEET)[0].errors())
    assert "missing )" in errors[ROUTE]
    assert answer(envoy.address, port) == "a"  # the last good routes keep serving


def test_reconnect_resends_nothing_envoy_has(
    control: Control, upstreams: dict[str, EchoServer], envoys: Callable[..., EnvoyProcess]
) -> None:
    port = free_port()
    snapshot = snapshot_of(manifests(port, upstreams, "a"))
    control.start(snapshot)
    envoy = envoys("edge-1", control.port)
    wait_for(lambda: control.synced(snapshot), timeout=10, interval=0.02, what="the first delta sync")
    wait_serving(envoy, port, "a")

    # A restarted control plane: new server, no memory of the node; Envoy reconnects with what it has.
    xds_port = control.port
    control.stop_server()
    control.start(snapshot, port=xds_port)
    wait_for(lambda: control.synced(snapshot), timeout=20, interval=0.05, what="the node back and SYNCED")

    def sent() -> dict[str, int]:
        (node,) = ads_nodes(control)
        return {t.rsplit(".", 1)[1]: s.resources_sent for t, s in node.types.items() if isinstance(s, DeltaTypeState)}

    assert sent() == {"Cluster": 0, "ClusterLoadAssignment": 0, "Listener": 0, "RouteConfiguration": 0}
    assert answer(envoy.address, port) == "a"

    # The next change still goes through, and only it goes.
    moved = snapshot_of(manifests(port, upstreams, "b"))
    control.serve(moved)
    wait_serving(envoy, port, "b")
    assert sent() == {"Cluster": 0, "ClusterLoadAssignment": 0, "Listener": 0, "RouteConfiguration": 1}


def ads_nodes(control: Control) -> list[Any]:
    return control.on_loop(lambda ads: ads.nodes(FLEET))


def test_sotw_and_delta_nodes_in_one_fleet(
    control: Control, upstreams: dict[str, EchoServer], envoys: Callable[..., EnvoyProcess]
) -> None:
    port = free_port()
    first = snapshot_of(manifests(port, upstreams, "a"))
    control.start(first)
    delta = envoys("edge-delta", control.port, "delta", "127.0.0.21")
    sotw = envoys("edge-sotw", control.port, "sotw", "127.0.0.22")
    wait_for(lambda: control.synced(first, nodes=2), timeout=10, interval=0.02, what="both nodes SYNCED")
    for envoy in (delta, sotw):
        wait_serving(envoy, port, "a")

    second = snapshot_of(manifests(port, upstreams, "b"))
    started = time.monotonic()
    control.serve(second)
    wait_for(lambda: control.synced(second, nodes=2), timeout=10, interval=0.02, what="both nodes on the update")
    for envoy in (delta, sotw):
        wait_serving(envoy, port, "b")
    assert time.monotonic() - started < 5
    assert {s.node_id: s.types[CLUSTER].__class__.__name__ for s in ads_nodes(control)} == {
        "edge-delta": "DeltaTypeState",
        "edge-sotw": "TypeState",
    }
