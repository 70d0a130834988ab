"""Issue 5: rollouts wave by wave over real Envoys, verified through their admin APIs, reverted when bad."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.cli.localrun import EchoServer, EnvoyProcess, free_port
from tests.support import DaemonProcess, GitRemote, InProcessDaemon, wait_for

HOST = "shop.example.test"
# Each node has a loopback address of its own (admin API and gateway listeners), as if on its own host.
ADDRESSES = {"gw-1": "127.0.0.2", "gw-2": "127.0.0.3", "gw-3": "127.0.0.4", "gw-4": "127.0.0.5"}
NODES = ("gw-1", "gw-2", "gw-3")


class Repo:
    """The config repo of these tests: one fleet, one gateway port, one VirtualService we rewrite."""

    def __init__(self, remote: GitRemote, port: int, upstreams: dict[str, EchoServer], rollout: str) -> None:
        self.remote, self.port = remote, port
        dead = free_port()  # nothing listens here: traffic to it fails with 503
        remote.write(
            "fleet.yaml",
            f"""
            apiVersion: reconciler/v1
            kind: Fleet
            metadata: {{name: edge}}
            spec:
              selector: {{app: edge}}
              rollout: {rollout}
            ---
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {{name: edge}}
            spec:
              selector: {{app: edge}}
              servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
            """,
        )
        endpoints = {**{name: server.port for name, server in upstreams.items()}, "dead": dead}
        remote.write(
            "services.yaml",
            "\n---\n".join(
                f"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {{name: {name}}}
            spec:
              hosts: [{name}.internal]
              ports: [{{number: 80, name: http, protocol: HTTP}}]
              resolution: STATIC
              endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
            """
                for name, port in endpoints.items()
            ),
        )

    def route(self, target: str, match: str = "") -> str:
        """Route HOST to `target` (optionally only under a `match` block) and push; returns the SHA."""
        match_block = f"\n              - match: [{match}]" if match else "\n              -"
        self.remote.write(
            "routes.yaml",
            f"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {{name: shop}}
            spec:
              hosts: [{HOST}]
              gateways: [edge]
              http:{match_block}
                route: [{{destination: {{host: {target}.internal}}}}]
            """,
        )
        return self.remote.commit_and_push(f"route to {target}")


Daemon = DaemonProcess | InProcessDaemon


@dataclass
class Fleet:
    """A test's fleet, every node on the first revision (`good`, which routes HOST to upstream a)."""

    port: int
    repo: Repo
    good: str
    daemon: Daemon
    envoys: dict[str, EnvoyProcess]


@pytest.fixture
def start_fleet(
    tmp_path: Path, remote: GitRemote, upstreams: dict[str, EchoServer],
    start_daemon: Callable[..., DaemonProcess], start_envoy: Callable[..., EnvoyProcess],
) -> Iterator[Callable[..., Fleet]]:  # fmt: skip
    in_process: list[InProcessDaemon] = []

    def start(rollout: str, port: int = 0, in_process_config: dict[str, Any] | None = None) -> Fleet:
        """With `in_process_config` the daemon runs on a thread of the test (so the test can patch it)."""
        port = port or free_port()
        repo = Repo(remote, port, upstreams, rollout)
        good = repo.route("a")
        daemon: Daemon
        if in_process_config is None:
            daemon = start_daemon(remote.url)
        else:
            (tmp_path / "daemon").mkdir()
            daemon = InProcessDaemon(tmp_path / "daemon", remote.url, extra=in_process_config).start()
            in_process.append(daemon)
        envoys = {node: start_envoy("edge", node, daemon.xds_port, ADDRESSES[node]) for node in NODES}
        wait_for(lambda: nodes_on(daemon, good), what="all nodes on the good revision")
        return Fleet(port, repo, good, daemon, envoys)

    yield start
    for daemon in in_process:
        daemon.stop()


def answer(port: int, node: str = "gw-1") -> tuple[int, str]:
    response = requests.get(f"http://{ADDRESSES[node]}:{port}/", headers={"Host": HOST}, timeout=3)
    return response.status_code, response.headers.get("x-upstream", "")


def nodes_on(daemon: Daemon, revision: str) -> bool:
    fleet = daemon.fleet("edge")
    return len(fleet["nodes"]) == len(NODES) and all(n["revision"] == revision for n in fleet["nodes"])


def finished(daemon: Daemon, revision: str) -> dict[str, Any] | None:
    for entry in daemon.fleet("edge")["history"]:
        if entry["revision"] == revision and entry["result"] not in ("Interrupted", "Superseded"):
            return dict(entry)
    return None


def rejected_updates(envoy: EnvoyProcess) -> int:
    return sum(v for k, v in envoy.stats(r"update_rejected").items() if k.endswith("update_rejected"))


class SteadyLoad:
    """Requests through every node, round robin, until stopped; tallies status codes per node."""

    def __init__(self, port_by_node: dict[str, int]) -> None:
        self.port_by_node = port_by_node
        self.codes: dict[str, Counter[int]] = {node: Counter() for node in port_by_node}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            for node, port in self.port_by_node.items():
                try:
                    url = f"http://{ADDRESSES[node]}:{port}/"
                    code = session.get(url, headers={"Host": HOST}, timeout=2).status_code
                except requests.RequestException:
                    code = 0
                self.codes[node][code] += 1
            self._stop.wait(0.01)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_good_change_reaches_every_node_wave_by_wave(start_fleet: Callable[..., Fleet]) -> None:
    edge = start_fleet("{waves: [1, 100%], bake: 1s, ackTimeout: 10s}")
    port, daemon, envoys, first = edge.port, edge.daemon, edge.envoys, edge.good

    second = edge.repo.route("b")
    entry = wait_for(lambda: finished(daemon, second), timeout=30, what="the rollout of the second revision")
    assert entry["result"] == "Succeeded" and entry["kind"] == "rollout"
    assert [w["nodes"] for w in entry["waves"]] == [["gw-1"], ["gw-2", "gw-3"]]
    assert all(w["state"] == "Passed" for w in entry["waves"])
    assert entry["waves"][0]["finished_at"] <= entry["waves"][1]["started_at"]
    fleet = daemon.fleet("edge")
    assert fleet["phase"] == "Synced" and fleet["last_good_revision"] == second
    assert all(n["state"] == "SYNCED" and n["revision"] == second for n in fleet["nodes"])
    assert all(answer(port, node) == (200, "b") for node in envoys)
    history = reconciler_cli("history", "edge", "--api", daemon.api)
    assert f"{second[:12]}  rollout  Succeeded" in history and f"{first[:12]}" in history
    metrics = requests.get(f"{daemon.api}/metrics", timeout=5).text
    assert 'reconciler_rollouts_total{fleet="edge",result="Succeeded"}' in metrics
    assert 'reconciler_connected_nodes{fleet="edge",state="SYNCED"} 3.0' in metrics


def test_nacked_change_is_reverted_and_never_leaves_wave_one(
    remote: GitRemote, monkeypatch: pytest.MonkeyPatch, start_envoy: Callable[..., EnvoyProcess],
    start_fleet: Callable[..., Fleet],
) -> None:  # fmt: skip
    # An RE2 error Envoy rejects; validation and preflight would catch it, so this test lets it slip past.
    monkeypatch.setattr("reconciler.pipeline.validate", lambda *_: [])
    edge = start_fleet(
        "{waves: [1, 100%], bake: 1s, ackTimeout: 10s}", in_process_config={"preflight": {"enabled": False}}
    )
    port, daemon, envoys, good = edge.port, edge.daemon, edge.envoys, edge.good
    bad = edge.repo.route("b", match='{uri: {regex: "/api/(unclosed"}}')
    entry = wait_for(lambda: finished(daemon, bad), timeout=30, what="the bad revision's verdict")
    assert entry["result"] == "Reverted"
    assert "gw-1 rejected revision" in entry["reason"] and "missing )" in entry["reason"]
    # Attributed: the route configuration, and the VirtualService with its file and line.
    assert f"RouteConfiguration http.{port}; VirtualService default/shop at routes.yaml:2:1" in entry["reason"]
    assert [w["state"] for w in entry["waves"]] == ["Failed", "Pending"]  # wave 2 never started
    fleet = daemon.fleet("edge")
    assert fleet["quarantined_revision"] == bad and fleet["last_good_revision"] == good
    assert "missing )" in fleet["last_error"]
    wait_for(lambda: nodes_on(daemon, good), what="every node back on the good revision")
    assert rejected_updates(envoys["gw-1"]) >= 1
    assert rejected_updates(envoys["gw-2"]) == rejected_updates(envoys["gw-3"]) == 0

    fresh = start_envoy("edge", "gw-4", daemon.xds_port, "127.0.0.5")  # a node joining after the revert
    wait_for(lambda: answer(port, "gw-4") == (200, "a"), what="the fresh node serving the good route")
    assert "unclosed" not in requests.get(f"{fresh.admin_url}/config_dump", timeout=5).text
    assert rejected_updates(fresh) == 0

    reverted = remote.revert_head_and_push()  # `git revert` of the quarantined commit
    entry = wait_for(lambda: finished(daemon, reverted), timeout=30, what="the git revert's rollout")
    assert (entry["kind"], entry["result"]) == ("rollback", "Succeeded")
    assert daemon.fleet("edge")["quarantined_revision"] == ""


def test_error_rate_during_bake_reverts_before_the_rest_of_the_fleet(start_fleet: Callable[..., Fleet]) -> None:
    edge = start_fleet("{waves: [1, 100%], bake: 4s, ackTimeout: 10s, maxErrorRate: 0.05}")
    port, repo, good, daemon = edge.port, edge.repo, edge.good, edge.daemon
    with SteadyLoad({node: port for node in NODES}) as load:
        bad = repo.route("dead")  # ACKed by Envoy, but every request fails to connect
        entry = wait_for(lambda: finished(daemon, bad), timeout=40, what="the dead-upstream revision's verdict")
        wait_for(lambda: nodes_on(daemon, good), what="wave 1 back on the good revision")
    assert entry["result"] == "Reverted" and "answered 5xx" in entry["reason"]
    assert [w["state"] for w in entry["waves"]] == ["Failed", "Pending"]
    assert entry["finished_at"] - entry["waves"][0]["started_at"] < 4 + 5  # detected within the bake
    assert load.codes["gw-1"][503] > 0  # wave 1 did serve the bad config
    assert load.codes["gw-2"][503] == load.codes["gw-3"][503] == 0, load.codes  # the others never did
    fleet = daemon.fleet("edge")
    assert fleet["quarantined_revision"] == bad and "answered 5xx" in fleet["last_error"]
    assert fleet["phase"] == "Failed"


def test_probe_failure_reverts(start_fleet: Callable[..., Fleet]) -> None:
    port = free_port()
    probes = f"[{{name: home, port: {port}, host: {HOST}, path: /, expectStatus: 200}}]"
    edge = start_fleet(f"{{waves: [1, 100%], bake: 1s, ackTimeout: 10s, probes: {probes}}}", port=port)
    repo, good, daemon = edge.repo, edge.good, edge.daemon
    bad = repo.route("dead")  # no traffic at all: only the probe can notice
    entry = wait_for(lambda: finished(daemon, bad), timeout=30, what="the probe's verdict")
    assert entry["result"] == "Reverted"
    assert "probe 'home' through node gw-1" in entry["reason"] and "answered 503, expected 200" in entry["reason"]
    wait_for(lambda: nodes_on(daemon, good), what="every node back on the good revision")


def reconciler_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], capture_output=True, text=True,
                          timeout=30, check=True)  # fmt: skip
    return done.stdout


def watch_status(api: str, seconds: float) -> str:
    """`reconciler status --watch` for a while, then Ctrl-C; what it drew.

    Started as from a terminal, where Ctrl-C is not ignored: a test run started in the background (a CI job, a
    `cmd &`) ignores SIGINT, and the watcher would inherit that and never stop (seen in CI runs: a 10 s timeout).
    Drawn into a file, so that only the watcher's own exit is waited for."""
    with tempfile.TemporaryFile("w+") as drawn:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler is not inherited; SIG_IGN is
        try:
            watcher = subprocess.Popen(
                [sys.executable, "-m", "reconciler.cli.main", "status", "--watch", "--interval", "0.2", "--api", api],
                stdout=drawn, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        finally:
            signal.signal(signal.SIGINT, previous)
        try:
            time.sleep(seconds)
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(timeout=10) in (0, 130)
        finally:
            if watcher.poll() is None:  # one that did not stop must not outlive the test
                watcher.kill()
                watcher.wait()
        drawn.seek(0)
        return drawn.read()


def rollout_state(daemon: Daemon) -> tuple[str, str, int]:
    rollout = daemon.fleet("edge")["rollout"] or {}
    return rollout.get("revision", ""), rollout.get("state", ""), rollout.get("wave", 0)


def test_daemon_killed_mid_rollout_resumes_from_the_first_wave(
    remote: GitRemote, start_daemon: Callable[..., DaemonProcess], start_fleet: Callable[..., Fleet]
) -> None:
    edge = start_fleet("{waves: [1, 100%], bake: 3s, ackTimeout: 10s}")
    port, repo, good, daemon = edge.port, edge.repo, edge.good, edge.daemon
    new = repo.route("b")
    wait_for(lambda: rollout_state(daemon) == (new, "Baking", 1), what="wave 1 baking")
    daemon.kill()  # SIGKILL: no chance to record anything

    restarted = start_daemon(remote.url, xds_port=daemon.xds_port)
    entry = wait_for(lambda: finished(restarted, new), timeout=40, what="the resumed rollout's verdict")
    assert entry["result"] == "Succeeded"
    wait_for(lambda: nodes_on(restarted, new), what="every node on the new revision")
    history = [(h["revision"], h["result"]) for h in restarted.fleet("edge")["history"]]
    assert history[:2] == [(new, "Succeeded"), (new, "Interrupted")]
    assert (good, "Succeeded") in history  # nothing lost
    assert all(answer(port, node) == (200, "b") for node in NODES)


def test_envoy_restarted_mid_rollout_rejoins_with_the_right_snapshot(start_fleet: Callable[..., Fleet]) -> None:
    edge = start_fleet("{waves: [1, 100%], bake: 3s, ackTimeout: 10s}")
    port, repo, daemon, envoys = edge.port, edge.repo, edge.daemon, edge.envoys
    new = repo.route("b")
    wait_for(lambda: rollout_state(daemon) == (new, "Baking", 1), what="wave 1 baking")
    watched = watch_status(daemon.api, seconds=1.0)
    assert f"rollout {new[:12]}: Baking, wave 1 of 2" in watched
    assert "wave 1: Baking   gw-1" in watched and "wave 2: Pending  gw-2 gw-3" in watched
    envoys["gw-3"].stop()
    envoys["gw-3"].start()  # same node id: it rejoins while wave 1 bakes
    wait_for(lambda: answer(port, "gw-3") == (200, "a"), what="gw-3 back on last good, outside wave 1")
    assert answer(port, "gw-1") == (200, "b")
    entry = wait_for(lambda: finished(daemon, new), timeout=30, what="the rollout's verdict")
    assert entry["result"] == "Succeeded"
    wait_for(lambda: answer(port, "gw-3") == (200, "b"), what="gw-3 on the new revision after wave 2")


def test_newer_commit_supersedes_a_rollout_in_flight(start_fleet: Callable[..., Fleet]) -> None:
    edge = start_fleet("{waves: [1, 100%], bake: 3s, ackTimeout: 10s}")
    port, repo, daemon = edge.port, edge.repo, edge.daemon
    middle = repo.route("b")
    wait_for(lambda: rollout_state(daemon) == (middle, "Baking", 1), what="wave 1 baking")
    newest = repo.route("a", match="{uri: {prefix: /}}")
    entry = wait_for(lambda: finished(daemon, newest), timeout=30, what="the newest revision's rollout")
    assert entry["result"] == "Succeeded"
    history = [(h["revision"], h["result"]) for h in daemon.fleet("edge")["history"]]
    assert (middle, "Superseded") in history
    wait_for(lambda: nodes_on(daemon, newest), what="every node on the newest revision")
    assert all(answer(port, node) == (200, "a") for node in NODES)


def test_preflight_and_secret_scan_stop_a_revision_before_any_node(
    remote: GitRemote, monkeypatch: pytest.MonkeyPatch, start_fleet: Callable[..., Fleet]
) -> None:
    monkeypatch.setattr("reconciler.pipeline.validate", lambda *_: [])  # only preflight is left
    edge = start_fleet("{waves: [1, 100%], bake: 0s, ackTimeout: 10s}", in_process_config={})
    repo, good, daemon, envoys = edge.repo, edge.good, edge.daemon, edge.envoys

    bad = repo.route("b", match='{uri: {regex: "/api/(unclosed"}}')
    entry = wait_for(lambda: finished(daemon, bad) or _rejected(daemon, bad), what="the preflight verdict")
    assert entry["result"] == "Rejected" and "missing )" in entry["reason"]
    assert all(rejected_updates(envoy) == 0 for envoy in envoys.values())  # no node ever saw it

    remote.write("keys/edge.key", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
                 "-----END PRIVATE KEY-----\n")  # fmt: skip
    leaked = repo.route("a")
    entry = wait_for(lambda: _rejected(daemon, leaked), what="the secret scan verdict")
    assert "keys/edge.key:1:1" in entry["reason"] and "private key" in entry["reason"]
    assert daemon.fleet("edge")["last_good_revision"] == good


def _rejected(daemon: Daemon, revision: str) -> dict[str, Any] | None:
    for entry in daemon.fleet("edge")["history"]:
        if entry["revision"] == revision and entry["result"] == "Rejected":
            return dict(entry)
    return None
