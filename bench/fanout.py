"""ADS fan-out: K simulated Envoys on one ADS server process; how long one push takes to reach them all, and
how much memory each idle stream costs the server.

Three processes: this one orchestrates; `python -m bench.fanout server` runs an AdsServer and its gRPC server
(the daemon's xDS half, nothing else); `python -m bench.fanout clients` opens streams with grpc.aio, each on
its own HTTP/2 connection, subscribing as Envoy does (CDS and LDS wildcard, EDS and RDS by name) and ACKing
every response. They talk in JSON lines over stdin/stdout. Both sides stamp events with CLOCK_MONOTONIC,
which is one clock for all processes of the machine, so a receive time in a client compares with the push
time in the server.

K grows in steps on one server (e.g. 100, then 900 more in a second client process), so the memory per
stream is also reported as the marginal cost between steps, free of the server's fixed start-up costs.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from bench.common import ROOT, rss_kib, sig, summary
from bench.synthetic import RepoShape, change_destination, generate, single_gateway_vs
from reconciler.pipeline import build
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE
from reconciler.xds import AdsServer, XdsEvent, start_grpc_server

FLEET = "edge-0"
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
SUBSCRIBED = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
_LIBC = ctypes.CDLL("libc.so.6")


# ---------------------------------------------------------------------------------------------- server process


class AckTracker:
    """When every node has ACKed the given version of every given type (from the server's ACK events)."""

    def __init__(self, expect: dict[str, str], nodes: int) -> None:
        self.expect, self.nodes = expect, nodes
        self.acked: dict[str, set[str]] = {}
        self.done = asyncio.Event()
        self.finished_at = 0.0
        self.complete = 0

    def on_event(self, event: XdsEvent) -> None:
        if event.kind != "ACK" or self.expect.get(event.type_url) != event.version:
            return
        types = self.acked.setdefault(event.node, set())
        if event.type_url in types:
            return
        types.add(event.type_url)
        if len(types) == len(self.expect):
            self.complete += 1
            if self.complete == self.nodes:
                self.finished_at = time.monotonic()
                self.done.set()


async def serve(virtual_services: int) -> None:
    repo = generate(RepoShape(virtual_services))
    changed, _ = change_destination(repo, single_gateway_vs(repo, 0).index)
    snapshots = [build(r.files()).snapshots[FLEET] for r in (repo, changed)]
    ads = AdsServer()
    ads.set_fleet_snapshot(FLEET, snapshots[0])
    ads.set_known_fleets([FLEET])
    tracker: AckTracker | None = None
    ads.subscribe(lambda event: tracker.on_event(event) if tracker else None)
    server, port = await start_grpc_server(ads, "127.0.0.1:0")
    current = snapshots[0]
    names = {t: sorted(current.of_type(t)) for t in (ENDPOINT, ROUTE)}
    gc.collect()
    _LIBC.malloc_trim(0)
    _say({"port": port, "names": names, **rss_kib(os.getpid())})
    loop = asyncio.get_running_loop()
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).split():
        if command[0] == "sync":  # wait until that many nodes are SYNCED on the current snapshot
            while (synced := sum(n.synced_version == current.version for n in ads.nodes(FLEET))) < int(command[1]):
                await asyncio.sleep(0.05)
            _say({"synced": synced})
        elif command[0] == "rss":
            gc.collect()
            retained = rss_kib(os.getpid())
            _LIBC.malloc_trim(0)  # hand freed heap back to the OS: what is left is live memory
            _say({**retained, "live_rss_kib": rss_kib(os.getpid())["rss_kib"]})
        elif command[0] == "push":
            previous, current = current, snapshots[1] if current is snapshots[0] else snapshots[0]
            moved = {
                t: current.type_versions[t] for t in SUBSCRIBED if current.type_versions[t] != previous.type_versions[t]
            }
            tracker = AckTracker(moved, int(command[1]))
            started = time.monotonic()
            ads.set_fleet_snapshot(FLEET, current)
            await tracker.done.wait()
            body = sum(len(r.body) for t in moved for r in current.of_type(t).values())
            _say({"started": started, "acked_s": tracker.finished_at - started, "types": sorted(moved),
                  "versions": moved, "resource_bytes": body})  # fmt: skip
    await server.stop(grace=0)


def _say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


# ---------------------------------------------------------------------------------------------- client process


class SimulatedEnvoy:
    """One ADS stream on its own connection, subscribing and ACKing like Envoy (SotW or delta); remembers
    when each (type, version) last arrived."""

    def __init__(self, target: str, node: str, names: dict[str, list[str]], protocol: str) -> None:
        # A private subchannel pool gives each simulated Envoy its own TCP connection, as real Envoys have; and
        # like Envoy, no 4 MiB cap on a response (gRPC's default), which stalled the bench from ~2k VS (RDS > 4 MiB).
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)]
        self.channel = grpc.aio.insecure_channel(target, options=options)
        self.node, self.names, self.delta = node, names, protocol == "delta"
        self.requests: asyncio.Queue[Any] = asyncio.Queue()
        self.received: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        request, response = (
            (discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse)
            if self.delta
            else (discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse)
        )
        call = self.channel.stream_stream(
            DELTA_METHOD if self.delta else METHOD,
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )(self._outgoing())
        for type_url in SUBSCRIBED:
            self._subscribe(type_url)
        async for answer in call:
            version = answer.system_version_info if self.delta else answer.version_info
            self.received[(answer.type_url, version)] = time.monotonic()  # the latest arrival
            self._ack(answer.type_url, answer.nonce, version)

    def _subscribe(self, type_url: str) -> None:
        names = self.names.get(type_url, [])
        if self.delta:
            request: Any = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, resource_names_subscribe=names)
        else:
            request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
        if type_url == CLUSTER:  # the first request of the stream carries the node
            request.node.id, request.node.cluster = self.node, FLEET
        self.requests.put_nowait(request)

    def _ack(self, type_url: str, nonce: str, version: str) -> None:
        if self.delta:
            self.requests.put_nowait(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce))
        else:
            self.requests.put_nowait(discovery_pb2.DiscoveryRequest(
                type_url=type_url, resource_names=self.names.get(type_url, []), response_nonce=nonce,
                version_info=version,
            ))  # fmt: skip

    async def _outgoing(self) -> AsyncIterator[Any]:
        while True:
            yield await self.requests.get()


async def clients(target: str, first: int, count: int, names: dict[str, list[str]], protocol: str) -> None:
    envoys = [SimulatedEnvoy(target, f"sim-{i}", names, protocol) for i in range(first, first + count)]
    tasks = [asyncio.create_task(e.run()) for e in envoys]
    _say({"started": count})
    loop = asyncio.get_running_loop()
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).split():
        if command[0] == "received":  # when did each stream first get `type` at `version`?
            key = (command[1], command[2])
            times = [e.received[key] for e in envoys if key in e.received]
            _say({"count": len(times), "last": max(times, default=0.0), "first": min(times, default=0.0)})
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(e.channel.close() for e in envoys))


# ---------------------------------------------------------------------------------------------- orchestration


class Process:
    """A bench.fanout child speaking JSON lines."""

    def __init__(self, role: str, *args: str) -> None:
        self.role = role
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout", role, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str = "") -> dict[str, Any]:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        if command:
            self.popen.stdin.write(command + "\n")
            self.popen.stdin.flush()
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError(f"bench.fanout {self.role} exited with {self.popen.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> None:
        if self.popen.poll() is None:
            assert self.popen.stdin is not None
            self.popen.stdin.close()  # EOF ends the command loop
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def fanout(
    steps: Sequence[int], protocol: str = "sotw", virtual_services: int = 100, pushes: int = 3
) -> dict[str, Any]:
    """For each K in `steps` (ascending): connect streams up to K, measure idle RSS and `pushes` pushes."""
    server = Process("server", "--virtual-services", str(virtual_services))
    children = [server]
    try:
        ready = server.ask()
        target = f"127.0.0.1:{ready['port']}"
        names = json.dumps(ready["names"])
        idle = {"rss_kib": ready["rss_kib"], "live_rss_kib": ready["rss_kib"], "streams": 0}
        results = []
        for k in steps:
            opened = idle["streams"]
            client = Process("clients", "--target", target, "--first", str(opened), "--count", str(k - opened),
                             "--names", names, "--protocol", protocol)  # fmt: skip
            children.append(client)
            client.ask()
            connect_started = time.monotonic()
            server.ask(f"sync {k}")
            connect_s = time.monotonic() - connect_started
            time.sleep(1.0)  # idle: nothing in flight
            rss = server.ask("rss")
            pushes_done = [_push(server, children[1:], k) for _ in range(pushes)]
            results.append({
                "streams": k,
                "connect_and_sync_s": sig(connect_s),
                "server_rss_kib": rss["rss_kib"],
                "rss_per_stream_kib": sig((rss["rss_kib"] - ready["rss_kib"]) / k),
                "rss_per_stream_kb": sig((rss["rss_kib"] - ready["rss_kib"]) * 1.024 / k),
                "marginal_rss_per_stream_kib": sig((rss["rss_kib"] - idle["rss_kib"]) / (k - opened)),
                "live_rss_per_stream_kib": sig((rss["live_rss_kib"] - ready["rss_kib"]) / k),
                "marginal_live_rss_per_stream_kib": sig((rss["live_rss_kib"] - idle["live_rss_kib"]) / (k - opened)),
                "push_to_all_received_s": summary([p["received_s"] for p in pushes_done]),
                "push_to_all_acked_s": summary([p["acked_s"] for p in pushes_done]),
                "push_types": pushes_done[0]["types"],
                "push_resource_bytes": pushes_done[0]["resource_bytes"],
            })  # fmt: skip
            idle = {"rss_kib": rss["rss_kib"], "live_rss_kib": rss["live_rss_kib"], "streams": k}
        return {"protocol": protocol, "virtual_services": virtual_services,
                "server_rss_before_streams_kib": ready["rss_kib"], "steps": results}  # fmt: skip
    finally:
        for child in reversed(children):
            child.stop()


def _push(server: Process, client_processes: Sequence[Process], k: int) -> dict[str, Any]:
    pushed = server.ask(f"push {k}")
    last = 0.0
    for type_url, version in pushed["versions"].items():
        for client in client_processes:
            seen = client.ask(f"received {type_url} {version}")
            last = max(last, seen["last"])
    return {"acked_s": pushed["acked_s"], "received_s": last - pushed["started"], "types": pushed["types"],
            "resource_bytes": pushed["resource_bytes"]}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("--virtual-services", type=int, default=100)
    client = roles.add_parser("clients")
    client.add_argument("--target", required=True)
    client.add_argument("--first", type=int, default=0)
    client.add_argument("--count", type=int, required=True)
    client.add_argument("--names", required=True, help="JSON: type URL → resource names to subscribe to")
    client.add_argument("--protocol", choices=("sotw", "delta"), default="sotw")
    args = parser.parse_args(argv)
    from reconciler.logging import configure_logging

    configure_logging("json", "warning")  # the bench speaks on stdout; the server's info logs would get in the way
    if args.role == "server":
        asyncio.run(serve(args.virtual_services))
    else:
        asyncio.run(clients(args.target, args.first, args.count, json.loads(args.names), args.protocol))


if __name__ == "__main__":
    main()
