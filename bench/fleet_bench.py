"""Commit pushed → every Envoy of a fleet serving the change, with the real daemon, real git and real Envoys;
beside it, Envoy's own share: the same change pushed by an in-process ADS server, until every node ACKs and
serves it."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import requests

from bench.common import sig, summary, write_tree
from bench.synthetic import (
    RepoShape,
    SyntheticRepo,
    VirtualService,
    change_destination,
    generate,
    probe_path,
    single_gateway_vs,
)
from reconciler.cli.localrun import LOOPBACK, EchoServer, EnvoyProcess, free_port
from reconciler.pipeline import build
from reconciler.translate import TranslateOptions
from reconciler.translate.snapshot import ROUTE
from reconciler.xds import AdsServer, XdsEvent, start_grpc_server
from tests.support import DaemonProcess, GitRemote, wait_for

T = TypeVar("T")
FLEET = "edge-0"
# How often each node is asked over HTTP. The pollers (and the echo upstream they reach) share the 2 cores
# with the daemon and the Envoys: polling every few milliseconds during the daemon's build took a core from
# it and doubled its commit-to-rollout time at 1k VirtualServices. So after a commit the nodes are polled only
# once the daemon logs that the rollout started (no node can serve the change before), every 5 ms.
POLL_S = 0.005


class Upstreams:
    """Two echo servers; services alternate between them, so moving a route to the next service is visible."""

    def __init__(self) -> None:
        self.servers = [EchoServer(name).start() for name in ("a", "b")]

    def addresses(self) -> tuple[tuple[str, int], ...]:
        return tuple((LOOPBACK, s.port) for s in self.servers)

    def name_of(self, repo: SyntheticRepo, vs: VirtualService) -> str:
        host = vs.rules[0].destinations[0].host
        service = next(s for s in repo.services if s.host == host)
        return self.servers[service.index % len(self.servers)].name

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class Node:
    """One fleet member on its own loopback address; `serves` asks it over HTTP which upstream answers."""

    def __init__(self, envoy: EnvoyProcess, port: int) -> None:
        self.envoy = envoy
        self.port = port
        self.session = requests.Session()

    def serves(self, vs: VirtualService) -> str:
        url = f"http://{self.envoy.address}:{self.port}{probe_path(vs)}"
        try:
            response = self.session.get(url, headers={"Host": vs.host}, timeout=1)
        except requests.RequestException:
            return ""
        return response.headers.get("x-upstream", "") if response.status_code == 200 else ""


def start_nodes(
    stack: ExitStack, workdir: Path, xds_port: int, count: int, port: int, protocol: str = "sotw"
) -> list[Node]:
    nodes = []
    for i in range(count):
        address = f"127.0.0.{11 + i}"
        envoy = EnvoyProcess(
            workdir / "envoys", FLEET, f"{FLEET}-{i}", xds_port, address=address, xds_protocol=protocol
        )
        stack.callback(envoy.stop)
        nodes.append(Node(envoy.start(), port))
    return nodes


def until_all_serve(
    nodes: Sequence[Node], vs: VirtualService, upstream: str, start: float, timeout: float
) -> list[float]:
    """Seconds from `start` until each node answers `vs`'s probe from `upstream` (one poller per node)."""

    def poll(node: Node) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.serves(vs) == upstream:
                return time.perf_counter() - start
            time.sleep(POLL_S)
        raise TimeoutError(f"{node.envoy.node_id} did not serve {vs.name} from {upstream} within {timeout}s")

    with ThreadPoolExecutor(len(nodes)) as pool:
        return list(pool.map(poll, nodes))


# ---------------------------------------------------------------------------------------------- daemon path


def commit_to_fleet(
    n: int, workdir: Path, node_count: int = 5, repeats: int = 3, protocol: str = "sotw"
) -> dict[str, Any]:
    upstreams = Upstreams()
    with ExitStack() as stack:
        stack.callback(upstreams.stop)
        repo = generate(RepoShape(n, upstreams=upstreams.addresses(), first_port=free_port()))
        gateway = repo.gateways[0]  # the probed VSs are bound to it alone
        remote = GitRemote(workdir / "git")
        write_tree(remote.work, repo.files())
        first = remote.commit_and_push("synthetic repo")
        (workdir / "daemon").mkdir(parents=True)
        daemon = DaemonProcess(workdir / "daemon", remote.url, poll="1h")  # only the API trigger reconciles
        stack.callback(daemon.stop)
        daemon.start()
        wait_for(lambda: daemon.fleet(FLEET)["last_good_revision"] == first, timeout=600, what="the first build")
        nodes = start_nodes(stack, workdir, daemon.xds_port, node_count, gateway.port, protocol)
        warm = single_gateway_vs(repo, 0, gateway)
        until_all_serve(nodes, warm, upstreams.name_of(repo, warm), time.perf_counter(), 60)
        samples = []
        for attempt in range(repeats):
            repo, changed = change_destination(repo, single_gateway_vs(repo, attempt + 1, gateway).index)
            samples.append(_one_commit(remote, daemon, nodes, repo, changed, upstreams))
        return {
            "virtual_services": n,
            "nodes": node_count,
            "protocol": protocol,
            "push_to_all_serving_s": summary([s["all_serving_s"] for s in samples]),
            "samples": samples,
        }


def _one_commit(remote: GitRemote, daemon: DaemonProcess, nodes: Sequence[Node], repo: SyntheticRepo,
                changed: VirtualService, upstreams: Upstreams) -> dict[str, Any]:  # fmt: skip
    write_tree(remote.work, {changed.path: repo.files()[changed.path]})
    remote.git("add", "-A")
    remote.git("commit", "-q", "-m", f"move {changed.name}'s probe route")
    sha = remote.git("rev-parse", "HEAD")
    log_from = daemon.log_path.stat().st_size
    gc.collect()
    push_started = time.perf_counter()
    remote.git("push", "-q", "origin", remote.branch)
    pushed_at, pushed_wall = time.perf_counter(), time.time()
    requests.post(f"{daemon.api}/api/v1/reconcile", timeout=5).raise_for_status()
    wait_for(lambda: _logged(daemon, log_from, "rollout.started", sha), timeout=600, interval=0.02, what="the rollout")
    serving = until_all_serve(nodes, changed, upstreams.name_of(repo, changed), pushed_at, 120)
    fleet = wait_for(lambda: settled(daemon, sha), timeout=120, interval=0.05, what=f"rollout of {sha[:12]}")
    wave = fleet["rollout"]["waves"][0]
    rollout = fleet["rollout"]
    return {
        "git_push_s": sig(pushed_at - push_started),
        "all_serving_s": sig(max(serving)),
        "per_node_serving_s": [sig(s) for s in serving],
        # From the daemon's own records: when the rollout began (fetch + read + build + decide are before it),
        # when the wave's nodes had all ACKed, and when the wave passed its checks.
        "daemon": {
            "push_to_rollout_started_s": sig(rollout["started_at"] - pushed_wall),
            "push_to_wave_acked_s": sig(wave["acked_at"] - pushed_wall),
            "wave_push_to_acked_s": sig(wave["acked_at"] - wave["started_at"]),
            "push_to_wave_passed_s": sig(wave["finished_at"] - pushed_wall),
        },
    }


def _logged(daemon: DaemonProcess, offset: int, event: str, sha: str) -> bool:
    with daemon.log_path.open("rb") as log:
        log.seek(offset)
        return any(f'"{event}"'.encode() in line and sha[:12].encode() in line for line in log)


def settled(daemon: DaemonProcess, sha: str, fleet_name: str = FLEET) -> dict[str, Any] | None:
    """The fleet's status once the rollout of `sha` has ended (None before); an error if it did not succeed."""
    fleet = daemon.fleet(fleet_name)
    rollout = fleet.get("rollout") or {}
    if rollout.get("revision") == sha and rollout.get("result"):
        if rollout["result"] != "Succeeded":
            raise RuntimeError(f"the rollout of {sha[:12]} ended {rollout['result']}: {rollout.get('reason')}")
        return fleet
    return None


# ---------------------------------------------------------------------------------------------- Envoy's share


class LoopThread:
    """An asyncio loop on a thread, so ADS runs beside the synchronous HTTP pollers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def call(self, fn: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def envoy_share(n: int, workdir: Path, node_count: int = 5, repeats: int = 5) -> dict[str, Any]:
    """The same kind of change (one VS's route moved), pushed from an in-process AdsServer: no git, no build.
    Time zero is `set_fleet_snapshot`; the ACK times are taken on the server's loop as the ACKs arrive."""
    upstreams = Upstreams()
    loop = LoopThread()
    with ExitStack() as stack:
        stack.callback(upstreams.stop)
        stack.callback(loop.stop)
        repo = generate(RepoShape(n, upstreams=upstreams.addresses(), first_port=free_port()))
        gateway = repo.gateways[0]
        changed_repo, changed = change_destination(repo, single_gateway_vs(repo, 1, gateway).index)
        options = TranslateOptions(default_bind=LOOPBACK)
        states = [
            (build(r.files(), options).snapshots[FLEET], upstreams.name_of(r, r.virtual_services[changed.index]))
            for r in (repo, changed_repo)
        ]
        ads = AdsServer()
        synced: dict[str, dict[str, float]] = {}

        def on_event(event: XdsEvent) -> None:  # runs on the loop, right after the stream recorded the ACK
            if event.kind == "ACK":
                for stream in ads.nodes(FLEET):
                    if stream.synced_version == stream.snapshot.version:
                        synced.setdefault(stream.snapshot.version, {}).setdefault(stream.node_id, time.perf_counter())

        async def boot() -> int:
            ads.subscribe(on_event)
            ads.set_fleet_snapshot(FLEET, states[0][0])
            ads.set_known_fleets([FLEET])
            server, bound = await start_grpc_server(ads, f"{LOOPBACK}:0")
            stack.callback(lambda: loop.run(server.stop(grace=0)))
            return bound

        xds_port = loop.run(boot())
        nodes = start_nodes(stack, workdir, xds_port, node_count, gateway.port)
        until_all_serve(nodes, changed, states[0][1], time.perf_counter(), 60)
        acked, serving = [], []
        for attempt in range(repeats):
            snapshot, upstream = states[(attempt + 1) % 2]
            synced.pop(snapshot.version, None)
            gc.collect()
            start = time.perf_counter()
            loop.call(partial(ads.set_fleet_snapshot, FLEET, snapshot))
            served = until_all_serve(nodes, changed, upstream, start, 60)
            done = wait_for(partial(_all_acked, synced, snapshot.version, node_count), timeout=30, interval=0.01)
            acked.append(max(done) - start)
            serving.append(max(served))
        return {
            "virtual_services": n,
            "nodes": node_count,
            "route_config_bytes": max(len(r.body) for r in states[0][0].of_type(ROUTE).values()),
            "set_snapshot_to_all_acked_s": summary(acked),
            "set_snapshot_to_all_serving_s": summary(serving),
        }


def _all_acked(synced: dict[str, dict[str, float]], version: str, count: int) -> list[float] | None:
    times = synced.get(version, {})
    return list(times.values()) if len(times) == count else None
