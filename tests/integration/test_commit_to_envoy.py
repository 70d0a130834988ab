"""Issue 2's end-to-end path: a commit reaches a real Envoy, a revert brings the old route back."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from reconciler.cli.localrun import EchoServer, EnvoyProcess, free_port
from tests.support import DaemonProcess, GitRemote, InProcessDaemon, wait_for

HOST = "shop.example.test"


def gateway_repo(remote: GitRemote, upstreams: dict[str, EchoServer], gateway_port: int, target: str = "a") -> None:
    """A Fleet, a Gateway, two ServiceEntries and a VirtualService routing HOST to `target`."""
    remote.write(
        "fleet.yaml",
        """
        apiVersion: reconciler/v1
        kind: Fleet
        metadata: {name: edge}
        spec:
          selector: {app: edge-gateway}
        """,
    )
    remote.write(
        "gateway.yaml",
        f"""
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: edge, namespace: shop}}
        spec:
          selector: {{app: edge-gateway}}
          servers:
          - port: {{number: {gateway_port}, name: http, protocol: HTTP}}
            hosts: ["*"]
        """,
    )
    for name, server in upstreams.items():
        remote.write(
            f"services/{name}.yaml",
            f"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {{name: backend-{name}, namespace: shop}}
            spec:
              hosts: [backend-{name}.shop.internal]
              ports: [{{number: 80, name: http, protocol: HTTP}}]
              resolution: STATIC
              endpoints: [{{address: 127.0.0.1, ports: {{http: {server.port}}}}}]
            """,
        )
    route_to(remote, target)


def route_to(remote: GitRemote, target: str) -> None:
    remote.write(
        "routes/shop.yaml",
        f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: shop, namespace: shop}}
        spec:
          hosts: [{HOST}]
          gateways: [edge]
          http:
          - route:
            - destination: {{host: backend-{target}.shop.internal}}
        """,
    )


def answering_upstream(port: int, host: str = HOST, path: str = "/") -> str | None:
    response = requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=2)
    return response.headers.get("x-upstream") if response.status_code == 200 else None


@dataclass
class Edge:
    port: int
    revision: str
    daemon: DaemonProcess
    envoy: EnvoyProcess


@pytest.fixture
def serving_edge(
    remote: GitRemote,
    upstreams: dict[str, EchoServer],
    start_daemon: Callable[..., DaemonProcess],
    start_envoy: Callable[..., EnvoyProcess],
) -> Edge:
    """The repo routing HOST to upstream a, committed and served by the daemon to Envoy edge-1."""
    port = free_port()
    gateway_repo(remote, upstreams, port, target="a")
    revision = remote.commit_and_push("route shop to a")
    daemon = start_daemon(remote.url)
    envoy = start_envoy("edge", "edge-1", daemon.xds_port)
    wait_for(lambda: answering_upstream(port) == "a", what="traffic through Envoy to upstream a")
    return Edge(port, revision, daemon, envoy)


def test_commit_reaches_envoy_and_revert_restores(remote: GitRemote, serving_edge: Edge) -> None:
    port, first, daemon, envoy = serving_edge.port, serving_edge.revision, serving_edge.daemon, serving_edge.envoy
    assert requests.get(f"http://127.0.0.1:{port}/", headers={"Host": "other.test"}, timeout=2).status_code == 404

    route_to(remote, "b")
    second = remote.commit_and_push("route shop to b")
    wait_for(lambda: answering_upstream(port) == "b", what="traffic moving to upstream b")
    wait_for(lambda: daemon.fleet("edge")["applied_revision"] == second, what="status on the second commit")

    reverted = remote.revert_head_and_push()
    wait_for(lambda: answering_upstream(port) == "a", what="git revert bringing upstream a back")
    fleet = wait_for(lambda: _synced_on(daemon, "edge", reverted), what="node SYNCED on the revert commit")
    assert fleet["nodes"][0]["id"] == envoy.node_id
    assert first != second != reverted
    built = [json.loads(line) for line in daemon.log().splitlines() if '"revision.built"' in line]
    assert {entry["revision"] for entry in built} >= {second[:12], reverted[:12]}
    assert all(entry["build_s"] >= 0 and entry["gate_s"] >= 0 for entry in built)

    daemon.stop()  # SIGTERM: a graceful stop
    assert daemon.process is not None and daemon.process.returncode == 0
    assert '"daemon.stopped"' in daemon.log()


def _synced_on(daemon: DaemonProcess, fleet_name: str, revision: str) -> dict[str, object] | None:
    fleet = daemon.fleet(fleet_name)
    nodes = fleet["nodes"]
    ok = (
        fleet["applied_revision"] == revision
        and nodes
        and all(n["state"] == "SYNCED" and n["revision"] == revision for n in nodes)
    )
    return fleet if ok else None


def test_malformed_yaml_keeps_previous_config(remote: GitRemote, serving_edge: Edge) -> None:
    port, good, daemon = serving_edge.port, serving_edge.revision, serving_edge.daemon
    remote.write("routes/shop.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: [unclosed\n")
    bad = remote.commit_and_push("broken yaml")
    wait_for(lambda: daemon.status()["head"] == bad, what="the daemon seeing the bad commit")

    fleet = daemon.fleet("edge")
    assert fleet["applied_revision"] == good
    assert fleet["rejected_revision"] == bad
    assert "routes/shop.yaml:4:1" in fleet["last_error"]
    assert "flow sequence at line 3, column 7" in fleet["last_error"]
    assert fleet["history"][0]["result"] == "Rejected"
    assert "routes/shop.yaml:4:1" in daemon.log()
    assert answering_upstream(port) == "a"
    assert all(n["state"] == "SYNCED" and n["revision"] == good for n in fleet["nodes"])


def test_restart_with_unreachable_remote_serves_last_applied(
    tmp_path: Path,
    remote: GitRemote,
    upstreams: dict[str, EchoServer],
    start_daemon: Callable[..., DaemonProcess],
    start_envoy: Callable[..., EnvoyProcess],
) -> None:
    port = free_port()
    gateway_repo(remote, upstreams, port, target="b")
    applied = remote.commit_and_push("route to b")
    daemon = start_daemon(remote.url)
    wait_for(lambda: daemon.fleet("edge")["applied_revision"] == applied, what="first apply")
    daemon.kill()

    remote.bare.rename(tmp_path / "remote-gone.git")  # the git server is down
    restarted = start_daemon(remote.url, xds_port=daemon.xds_port)
    start_envoy("edge", "fresh-node", restarted.xds_port)
    wait_for(lambda: answering_upstream(port) == "b", what="a fresh Envoy served the last applied config")
    status = wait_for(lambda: (s := restarted.status())["last_error"] and s, what="the failed poll reported")
    assert status["fleets"][0]["applied_revision"] == applied
    assert str(remote.bare) in status["last_error"]  # names the repository it could not reach


def test_each_fleet_gets_only_its_listeners(
    remote: GitRemote,
    upstreams: dict[str, EchoServer],
    start_daemon: Callable[..., DaemonProcess],
    start_envoy: Callable[..., EnvoyProcess],
) -> None:
    edge_port, internal_port = free_port(), free_port()
    gateway_repo(remote, upstreams, edge_port, target="a")
    remote.write(
        "internal.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Fleet
        metadata: {{name: internal}}
        spec:
          selector: {{app: internal-gateway}}
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: internal, namespace: shop}}
        spec:
          selector: {{app: internal-gateway}}
          servers:
          - port: {{number: {internal_port}, name: http, protocol: HTTP}}
            hosts: ["*"]
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: internal, namespace: shop}}
        spec:
          hosts: [{HOST}]
          gateways: [internal]
          http:
          - route:
            - destination: {{host: backend-b.shop.internal}}
        """,
    )
    remote.commit_and_push("two fleets")
    daemon = start_daemon(remote.url)
    edge = start_envoy("edge", "edge-1", daemon.xds_port)
    internal = start_envoy("internal", "internal-1", daemon.xds_port)

    wait_for(lambda: answering_upstream(edge_port) == "a", what="edge fleet routing to a")
    wait_for(lambda: answering_upstream(internal_port) == "b", what="internal fleet routing to b")
    assert _listener_names(edge) == {f"0.0.0.0_{edge_port}"}
    assert _listener_names(internal) == {f"0.0.0.0_{internal_port}"}


def _listener_names(envoy: EnvoyProcess) -> set[str]:
    listeners = requests.get(f"{envoy.admin_url}/listeners", params={"format": "json"}, timeout=5).json()
    return {entry["name"] for entry in listeners.get("listener_statuses", [])}


def test_unknown_fleet_is_refused(
    remote: GitRemote,
    upstreams: dict[str, EchoServer],
    start_daemon: Callable[..., DaemonProcess],
    start_envoy: Callable[..., EnvoyProcess],
) -> None:
    port = free_port()
    gateway_repo(remote, upstreams, port)
    remote.commit_and_push("one fleet")
    daemon = start_daemon(remote.url)
    wait_for(lambda: daemon.status()["fleets"], what="the fleet to load")
    stranger = start_envoy("no-such-fleet", "stranger-1", daemon.xds_port)
    wait_for(lambda: "no-such-fleet" in daemon.log() and "xds.unknown_fleet" in daemon.log(), what="refusal log")
    assert _listener_names(stranger) == set()
    # Envoy retries the stream and counts as connected until each retry is refused again: poll for the state
    # between retries rather than read it once (under load a retry can be in flight at any given moment).
    wait_for(
        lambda: stranger.stats("control_plane.connected_state")["control_plane.connected_state"] == 0,
        what="the stranger's stream to be closed",
    )
    assert all(f["nodes"] == [] for f in daemon.status()["fleets"])


def test_a_push_trigger_fetches_at_once_and_a_poll_asks_first(
    remote: GitRemote, upstreams: dict[str, EchoServer], tmp_path: Path
) -> None:
    """After a push (the API's reconcile, as a webhook does) the daemon fetches without an ls-remote first;
    a scheduled poll still asks first, so an idle repository is never fetched from."""
    gateway_repo(remote, upstreams, free_port(), target="a")
    first = remote.commit_and_push("route shop to a")
    daemon = InProcessDaemon(tmp_path, remote.url, poll="1h").start()
    try:
        wait_for(lambda: daemon.status()["head"] == first, what="the first poll")
        asked: list[str] = []
        source = daemon.daemon.source
        ask = source.remote_head
        source.remote_head = lambda: asked.append("ls-remote") or ask()  # type: ignore[method-assign]
        route_to(remote, "b")
        second = remote.commit_and_push("route shop to b")
        assert requests.post(f"{daemon.api}/api/v1/reconcile", timeout=5).status_code == 202
        wait_for(lambda: daemon.status()["head"] == second, what="the pushed commit")
        assert asked == []
        daemon.daemon.reconcile()  # what the schedule runs
        assert asked == ["ls-remote"] and daemon.status()["head"] == second
    finally:
        daemon.stop()
