"""What Envoy must reload for a one-host change: the whole per-port RouteConfiguration, one VirtualHost over VHDS,
or one of several smaller RouteConfigurations.

    PYTHONPATH=. .venv/bin/python -m bench.route_split                    # N = 1,000 and 10,000 virtual hosts
    PYTHONPATH=. .venv/bin/python -m bench.route_split --sizes 1000 --repeats 5

For each N (virtual hosts of 10 routes each, one per VirtualService of a synthetic repo whose VSs all bind one
HTTP gateway; built by `bench/floor.py`, byte for byte what the pipeline emits for them), a real Envoy is
started per scenario (127.0.0.1 only, its own process group, stopped at the end) and driven by the scripted ADS
server below, which decides every response and records when it left and when Envoy ACKed (or NACKed) it:

- `whole`  — today's layout: one RouteConfiguration `http.<port>` with every host; a one-host change re-sends it
  whole, over SotW and over delta ADS (our delta server also sends the RouteConfiguration whole).
- `vhds`   — the RouteConfiguration names VHDS and holds no host; hosts are `VirtualHost` resources
  `<route config>/<host>` over delta ADS. Also checks what VHDS really does: what Envoy subscribes to, the first
  request for a host it has not loaded (with and without the `on_demand` filter), an unknown host, an RDS update
  of the route config, a removal, that SotW ADS refuses it, and (once, `vhds-empty-start`) what an empty first
  VHDS answer does to Envoy's start.
- `split`  — the same hosts spread over route configs of `--hosts-per-config` hosts (one listener each, as
  istiod's per-server `https.<port>.<name>.<gateway>.<ns>` configs would), over SotW re-sending every subscribed
  route config of the type (as reconciler/xds does), over SotW sending the changed one only (RDS allows it), and
  over delta (only the changed one, as reconciler/xds does).

Every change moves the probe route of one host to the other upstream; after the pushes the bench asks Envoy for
that host and checks which echo upstream answers. Time zero is the moment the pre-serialized response is handed
to gRPC; the ACK time is taken on the server's loop as the ACK arrives. Results: bench/results/route-split.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import requests
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.on_demand.v3 import on_demand_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from bench import floor
from bench.common import ROOT, machine, rss_kib, sig, summary, timed
from bench.fleet_bench import LoopThread, Upstreams
from bench.synthetic import RepoShape, Service, SyntheticRepo, VirtualService, change_destination, generate, probe_path
from reconciler.cli.localrun import LOOPBACK, EnvoyProcess, free_port
from tests.support import wait_for

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
VHOST = "type.googleapis.com/envoy.config.route.v3.VirtualHost"
WILDCARD_TYPES = (CLUSTER, LISTENER)
ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
RESULTS = ROOT / "bench" / "results" / "route-split.json"
FLEET = "route-split"
PORT_SUFFIX = re.compile(r":[0-9]+$")
ACK_TIMEOUT_S = 180.0  # a 10k-host route config is tens of MB; on a busy 2-core box Envoy takes seconds


# ---------------------------------------------------------------------------------------------- the scripted ADS server


@dataclass
class Exchange:
    """One response: when it was handed to gRPC and when Envoy answered it (ACK, or NACK with its error)."""

    type_url: str
    resources: int
    wire_bytes: int
    framed_s: float = 0.0  # building the DiscoveryResponse bytes from already-serialized resources
    sent_at: float | None = None
    answered_at: float | None = None
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> float:
        """Seconds from send to ACK or NACK (check `error`)."""
        if not self.done.wait(ACK_TIMEOUT_S):
            raise TimeoutError(f"Envoy did not answer a {self.type_url.rsplit('.', 1)[-1]} response in time")
        assert self.sent_at is not None and self.answered_at is not None
        return self.answered_at - self.sent_at


@dataclass(frozen=True)
class Update:
    name: str
    body: bytes | None  # None: the name is unknown (VHDS answers an on-demand miss with the bare name)
    alias: str = ""


class ScriptedAds:
    """A one-Envoy ADS server whose answers the bench scripts.

    It answers each type's first request (and, for SotW, any change of the names asked for) from `resources`;
    the VHDS subscription with every held host but the `withheld` ones; and a VirtualHost asked for by name (the
    on_demand filter's `<route config>/<Host header>`) with that host, the name as its alias, or, if unknown, with
    the bare name, as Envoy's VHDS docs ask. `push` sends what the bench says, at once.
    """

    def __init__(
        self, protocol: str, resources: dict[str, dict[str, bytes]], withheld: Sequence[str] = (),
        sotw_resend_all: bool = True,
    ) -> None:  # fmt: skip
        self.protocol = protocol
        self.sotw_resend_all = sotw_resend_all  # False: a SotW push carries the changed resources only
        self.resources = resources
        self.withheld = set(withheld)
        self.exchanges: dict[str, Exchange] = {}
        self.subscriptions: list[tuple[str, tuple[str, ...]]] = []  # (type, names) as Envoy asked, in order
        self.delivered: dict[str, set[str]] = {}  # names sent at least once, by type
        self._asked: dict[str, frozenset[str] | None] = {}  # by type: the names Envoy wants (None: all)
        self._nonces = itertools.count(1)
        self._lock = threading.Lock()  # resources, exchanges and names: touched by the bench and the loop
        self._outbox: asyncio.Queue[tuple[str, bytes]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.stream_stream_rpc_method_handler
        return grpc.method_handlers_generic_handler(ADS_SERVICE, {
            "StreamAggregatedResources": method(self._stream, discovery_pb2.DiscoveryRequest.FromString, bytes),
            "DeltaAggregatedResources": method(self._stream, discovery_pb2.DeltaDiscoveryRequest.FromString, bytes),
        })  # fmt: skip

    async def _stream(self, requests_in: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        self._loop, outbox = asyncio.get_running_loop(), asyncio.Queue[tuple[str, bytes]]()
        self._outbox = outbox
        reader = asyncio.create_task(self._read(requests_in, outbox))
        try:
            while True:
                nonce, body = await outbox.get()
                self.exchanges[nonce].sent_at = time.perf_counter()
                yield body
        finally:
            reader.cancel()

    async def _read(self, requests_in: AsyncIterator[Any], outbox: asyncio.Queue[tuple[str, bytes]]) -> None:
        async for request in requests_in:
            now = time.perf_counter()
            with self._lock:
                answered = self.exchanges.get(request.response_nonce)
                if answered is not None and answered.answered_at is None:  # SotW repeats the last nonce later
                    answered.answered_at = now
                    answered.error = request.error_detail.message if request.HasField("error_detail") else ""
                    answered.done.set()
                reply = self.answer(request)
            if reply is not None:
                outbox.put_nowait(reply)

    def answer(self, request: Any) -> tuple[str, bytes] | None:
        """The response (nonce, bytes) a request from Envoy gets, if any."""
        return self._sotw_answer(request) if self.protocol == "sotw" else self._delta_answer(request)

    def _sotw_answer(self, request: discovery_pb2.DiscoveryRequest) -> tuple[str, bytes] | None:
        type_url = request.type_url
        names = None if type_url in WILDCARD_TYPES else frozenset(request.resource_names)
        if type_url in self._asked and self._asked[type_url] == names:
            return None  # an ACK, or the same question again
        self.subscriptions.append((type_url, tuple(sorted(names or ()))))
        self._asked[type_url] = names
        return self._sotw_response(type_url)

    def _delta_answer(self, request: discovery_pb2.DeltaDiscoveryRequest) -> tuple[str, bytes] | None:
        type_url, subscribe = request.type_url, list(request.resource_names_subscribe)
        first = type_url not in self._asked
        if not first and not subscribe:
            return None  # an ACK or NACK
        self.subscriptions.append((type_url, tuple(subscribe)))
        held = self.resources.get(type_url, {})
        if first and not subscribe and type_url in WILDCARD_TYPES:
            self._asked[type_url] = None
            return self._delta_response(type_url, [Update(n, b) for n, b in held.items()])
        if first and not subscribe and type_url == VHOST:
            # Envoy 1.40's VHDS subscription on ADS is a legacy wildcard (its watch then keeps the hosts named
            # `<its route config>/...`): the server chooses which hosts to volunteer.
            self._asked[type_url] = None
            return self._delta_response(type_url, [Update(n, b) for n, b in held.items() if n not in self.withheld])
        self._asked[type_url] = frozenset(subscribe) | (self._asked.get(type_url) or frozenset())
        updates: list[Update] = []
        for name in subscribe:
            if type_url == VHOST:  # one host, asked for by the on_demand filter as the request's Host header said it
                known = name if name in held else PORT_SUFFIX.sub("", name)
                updates.append(Update(known, held.get(known), alias=name))
            elif name in held:
                updates.append(Update(name, held[name]))
        return self._delta_response(type_url, updates) if updates else None

    # ------------------------------------------------------------------ responses

    def push(self, type_url: str, updates: Sequence[tuple[str, bytes]], removed: Sequence[str] = ()) -> Exchange:
        """Change what the server holds and tell Envoy: SotW re-sends every subscribed resource of the type (as
        reconciler/xds does) unless `sotw_resend_all` is off (RDS allows that: a SotW route config missing from a
        response is kept), delta sends the changes only. Framing happens here, before the clock starts."""
        with self._lock:
            held = self.resources.setdefault(type_url, {})
            held.update(updates)
            for name in removed:
                held.pop(name, None)
            if self.protocol == "sotw":
                nonce, body = self._sotw_response(type_url, None if self.sotw_resend_all else [n for n, _ in updates])
            else:
                nonce, body = self._delta_response(type_url, [Update(n, b) for n, b in updates], removed)
        assert self._loop is not None and self._outbox is not None, "Envoy has not connected"
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, (nonce, body))
        return self.exchanges[nonce]

    def _sotw_response(self, type_url: str, only: Sequence[str] | None = None) -> tuple[str, bytes]:
        held = self.resources.get(type_url, {})
        names = self._asked.get(type_url) if only is None else only
        chosen = [Update(n, held[n]) for n in sorted(held if names is None else names) if n in held]
        nonce = str(next(self._nonces))
        started = time.perf_counter()
        response = discovery_pb2.DiscoveryResponse(
            version_info=nonce, type_url=type_url, nonce=nonce,
            resources=[any_pb2.Any(type_url=type_url, value=u.body) for u in chosen],
        )  # fmt: skip
        return self._register(nonce, type_url, chosen, response, started)

    def _delta_response(self, type_url: str, updates: list[Update], removed: Sequence[str] = ()) -> tuple[str, bytes]:
        nonce = str(next(self._nonces))
        started = time.perf_counter()
        entries = []
        for update in updates:
            entry = discovery_pb2.Resource(
                name=update.name, version=nonce, aliases=[update.alias] if update.alias else []
            )
            if update.body is not None:
                entry.resource.CopyFrom(any_pb2.Any(type_url=type_url, value=update.body))
            entries.append(entry)
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=nonce, type_url=type_url, nonce=nonce, resources=entries, removed_resources=removed
        )
        return self._register(nonce, type_url, updates, response, started)

    def _register(
        self, nonce: str, type_url: str, updates: Sequence[Update], response: Message, started: float
    ) -> tuple[str, bytes]:
        body = response.SerializeToString()
        exchange = Exchange(type_url, len(updates), len(body), framed_s=time.perf_counter() - started)
        self.exchanges[nonce] = exchange
        self.delivered.setdefault(type_url, set()).update(u.name for u in updates if u.body is not None)
        return nonce, body

    def settled(self, expected: dict[str, int]) -> bool:
        """Every response answered, and at least `expected[type]` resources of each type delivered."""
        with self._lock:
            delivered = all(len(self.delivered.get(t, ())) >= n for t, n in expected.items())
            return delivered and all(e.done.is_set() for e in self.exchanges.values())

    def first_exchange(self, type_url: str) -> Exchange:
        return next(e for e in self.exchanges.values() if e.type_url == type_url)

    def asked_since(self, count: int, type_url: str) -> list[list[str]]:
        return [list(names) for t, names in self.subscriptions[count:] if t == type_url]


# ---------------------------------------------------------------------------------------------- Envoy resources


def vhds_name(route_config: str, host: str) -> str:
    """A VirtualHost's VHDS resource name. The VirtualHost's own `name` must be the same: Envoy keeps the hosts
    it got over VHDS by `VirtualHost.name` but removes them by resource name (with `host:port` names, as the
    pipeline sets them, a removal was ACKed and the host kept serving)."""
    return f"{route_config}/{host}"


def route_config_of(name: str, vhosts: Sequence[route_components_pb2.VirtualHost]) -> route_pb2.RouteConfiguration:
    """A RouteConfiguration with the fields the pipeline sets (see floor.route_config), holding `vhosts`."""
    config = floor.route_config(0, [])
    config.name = name
    config.virtual_hosts.extend(vhosts)
    return config


def vhds_route_config(name: str) -> route_pb2.RouteConfiguration:
    """The route config with no host of its own: every host comes over VHDS, on the ADS stream."""
    config = route_config_of(name, [])
    config.vhds.config_source.CopyFrom(floor._ads())
    return config


def vhds_host(route_config: str, vhost: route_components_pb2.VirtualHost) -> route_components_pb2.VirtualHost:
    renamed = route_components_pb2.VirtualHost()
    renamed.CopyFrom(vhost)
    renamed.name = vhds_name(route_config, vhost.domains[0])
    return renamed


def http_listener(port: int, route_config: str, on_demand: bool = False) -> listener_pb2.Listener:
    filters = [hcm.HttpFilter(name="envoy.filters.http.router", typed_config=floor._pack(router_pb2.Router()))]
    if on_demand:  # it must come before the router: it holds a request whose host has no route until VHDS answers
        filters.insert(
            0, hcm.HttpFilter(name="envoy.filters.http.on_demand", typed_config=floor._pack(on_demand_pb2.OnDemand()))
        )
    manager = hcm.HttpConnectionManager(
        stat_prefix=f"http_{port}",
        rds=hcm.Rds(config_source=floor._ads(), route_config_name=route_config),
        http_filters=filters,
    )
    chain = listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=floor._pack(manager))])  # fmt: skip
    return listener_pb2.Listener(
        name=f"http_{port}",
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=LOOPBACK, port_value=port)),
        filter_chains=[chain],
    )


def static_cluster(service: Service) -> cluster_pb2.Cluster:
    """The probe routes' clusters (the subset-less `outbound|80||<service>`), STATIC at the echo upstreams; the
    other clusters routes name stay missing, which RDS allows (`validate_clusters: false`)."""
    name = f"outbound|{service.port}||{service.host}"
    address, port, _ = service.endpoints[0]
    endpoint = endpoint_components_pb2.Endpoint(
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))
    )
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration_pb2.Duration(seconds=1),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[endpoint_components_pb2.LbEndpoint(endpoint=endpoint)]
                )
            ],
        ),
    )


def virtual_hosts_field(vhost: bytes) -> bytes:
    """A serialized VirtualHost as RouteConfiguration field 2 (`virtual_hosts`, length-delimited)."""
    return bytes([2 << 3 | 2]) + _varint(len(vhost)) + vhost


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def distinct_free_ports(count: int) -> list[int]:
    """`count` different free ports: all held bound until the last is found (free_port may hand one out twice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def serialized(messages: Sequence[Message], name: Callable[[Any], str]) -> dict[str, bytes]:
    return {name(m): m.SerializeToString(deterministic=True) for m in messages}


# ---------------------------------------------------------------------------------------------- one N's resources


@dataclass
class Fixture:
    """N hosts on one HTTP port; one of them in two states (A, B) whose probe route reaches the other upstream."""

    repo: SyntheticRepo
    port: int
    hosts: list[VirtualService]  # by host name, as the route config orders them
    vhosts: list[route_components_pb2.VirtualHost]  # state A
    changed_at: int  # the changed host's position in `hosts`
    states: tuple[VirtualService, VirtualService]  # the changed VS in state A and B
    state_vhosts: tuple[route_components_pb2.VirtualHost, route_components_pb2.VirtualHost]
    upstreams: tuple[str, str]  # who answers the changed host's probe in state A and B
    clusters: dict[str, bytes]
    build_s: float  # constructing every VirtualHost and the route config, once

    @property
    def n(self) -> int:
        return len(self.hosts)

    @property
    def route_name(self) -> str:
        return f"http.{self.port}"

    def whole(self, state: int) -> route_pb2.RouteConfiguration:
        vhosts = list(self.vhosts)
        vhosts[self.changed_at] = self.state_vhosts[state]
        return route_config_of(self.route_name, vhosts)


def fixture(n: int, upstreams: Upstreams) -> Fixture:
    shape = RepoShape(n, fleets=1, gateways_per_fleet=1, upstreams=upstreams.addresses(), first_port=free_port())
    repo = generate(shape)
    port = repo.gateways[0].port
    hosts = sorted(repo.virtual_services, key=lambda vs: vs.host)
    changed_at = n // 2
    changed_repo, changed = change_destination(repo, hosts[changed_at].index)
    started = time.perf_counter()
    vhosts = [floor.virtual_host(vs, port) for vs in hosts]
    route_config_of(f"http.{port}", vhosts)
    build_s = time.perf_counter() - started
    return Fixture(
        repo=repo, port=port, hosts=hosts, vhosts=vhosts, changed_at=changed_at,
        states=(hosts[changed_at], changed),
        state_vhosts=(vhosts[changed_at], floor.virtual_host(changed, port)),
        upstreams=(upstreams.name_of(repo, hosts[changed_at]), upstreams.name_of(changed_repo, changed)),
        clusters=serialized([static_cluster(s) for s in repo.services], lambda c: c.name),
        build_s=build_s,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- one Envoy, one server


class Session:
    """A scripted ADS server on its own loop thread and one real Envoy connected to it."""

    def __init__(self, ads: ScriptedAds, envoy: EnvoyProcess) -> None:
        self.ads, self.envoy = ads, envoy
        self.http = requests.Session()

    def ask(self, port: int, host: str, path: str) -> dict[str, Any]:
        """One request through Envoy: status, answering upstream, and seconds."""
        started = time.perf_counter()
        response = self.http.get(f"http://{LOOPBACK}:{port}{path}", headers={"Host": host}, timeout=60)
        return {"status": response.status_code, "upstream": response.headers.get("x-upstream", ""),
                "seconds": sig(time.perf_counter() - started)}  # fmt: skip

    def ask_recording(self, port: int, vs: VirtualService, host_suffix: str = "") -> dict[str, Any]:
        """`ask` for `vs`'s probe path, and the VirtualHost names Envoy asked for meanwhile (on-demand VHDS)."""
        mark = len(self.ads.subscriptions)
        answer = self.ask(port, vs.host + host_suffix, probe_path(vs))
        return {**answer, "vhds_requested": self.ads.asked_since(mark, VHOST)}

    def serves(self, port: int, vs: VirtualService, upstream: str) -> dict[str, Any]:
        answer = self.ask(port, vs.host, probe_path(vs))
        if (answer["status"], answer["upstream"]) != (200, upstream):
            raise AssertionError(f"{vs.host} on port {port}: expected 200 from {upstream!r}, got {answer}")
        return answer

    def settle(self, expected: dict[str, int]) -> None:
        wait_for(
            partial(self.ads.settled, expected),
            timeout=ACK_TIMEOUT_S,
            interval=0.02,
            what=f"Envoy's ACKs of {expected}",
        )

    def rss_mib(self) -> float:
        assert self.envoy.process is not None
        return round(rss_kib(self.envoy.process.pid)["rss_kib"] / 1024, 1)


@contextmanager
def session(ads: ScriptedAds, workdir: Path, name: str) -> Iterator[Session]:
    loop = LoopThread()
    envoy: EnvoyProcess | None = None
    server: grpc.aio.Server | None = None

    async def serve() -> tuple[grpc.aio.Server, int]:
        grpc_server = grpc.aio.server(options=[("grpc.so_reuseport", 0), ("grpc.max_send_message_length", 1 << 30)])
        grpc_server.add_generic_rpc_handlers((ads.handler(),))
        port = grpc_server.add_insecure_port(f"{LOOPBACK}:0")
        await grpc_server.start()
        return grpc_server, port

    try:
        server, xds_port = loop.run(serve())
        envoy = EnvoyProcess(workdir, FLEET, name, xds_port, xds_protocol=ads.protocol)
        yield Session(ads, envoy.start())
    finally:
        if envoy is not None:
            envoy.stop()
        if server is not None:
            loop.run(server.stop(grace=None))
        loop.stop()


def pushes(
    ads: ScriptedAds, repeats: int, make: Callable[[int], tuple[str, list[tuple[str, bytes]]]]
) -> list[Exchange]:
    """`repeats` one-host changes, alternating B, A, B, ...; each waits for Envoy's answer before the next."""
    done = []
    for attempt in range(repeats):
        type_url, updates = make(1 - attempt % 2)
        gc.collect()
        exchange = ads.push(type_url, updates)
        exchange.wait()
        if exchange.error:
            raise AssertionError(f"Envoy NACKed a one-host change: {exchange.error}")
        done.append(exchange)
    return done


def change_figures(exchanges: Sequence[Exchange]) -> dict[str, Any]:
    return {
        "send_to_ack_s": summary([e.wait() for e in exchanges]),
        "wire_bytes": exchanges[-1].wire_bytes,
        "resources_sent": exchanges[-1].resources,
        "framing_s": summary([e.framed_s for e in exchanges]),
    }


def last_state(repeats: int) -> int:
    return 1 - (repeats - 1) % 2


# ---------------------------------------------------------------------------------------------- scenarios


def whole(fx: Fixture, protocol: str, workdir: Path, repeats: int) -> dict[str, Any]:
    """Today's layout: every host in `http.<port>`; a one-host change re-sends the whole route config."""
    bodies = [fx.whole(state).SerializeToString(deterministic=True) for state in (0, 1)]
    resources = {
        CLUSTER: fx.clusters,
        LISTENER: serialized([http_listener(fx.port, fx.route_name)], lambda m: m.name),
        ROUTE: {fx.route_name: bodies[0]},
    }
    ads = ScriptedAds(protocol, resources)
    with session(ads, workdir, f"whole-{protocol}-{fx.n}") as s:
        s.settle({ROUTE: 1, LISTENER: 1})
        initial = ads.first_exchange(ROUTE)
        s.serves(fx.port, fx.states[0], fx.upstreams[0])
        exchanges = pushes(ads, repeats, lambda state: (ROUTE, [(fx.route_name, bodies[state])]))
        final = last_state(repeats)
        result = {
            "scenario": "whole", "protocol": protocol, "virtual_hosts": fx.n, "route_config_bytes": len(bodies[0]),
            "initial_route_config_apply_s": sig(initial.wait()),
            "one_host_change": change_figures(exchanges),
            "served_after_change": s.serves(fx.port, fx.states[final], fx.upstreams[final]),
            "envoy_rss_mib": s.rss_mib(),
        }  # fmt: skip
        if protocol == "sotw":
            result["vhds_over_sotw"] = vhds_refused(s, fx, final)
        return result


def vhds_refused(s: Session, fx: Fixture, final: int) -> dict[str, Any]:
    """A route config that names VHDS, pushed on a SotW ADS stream: Envoy refuses it and keeps the last one."""
    exchange = s.ads.push(ROUTE, [(fx.route_name, vhds_route_config(fx.route_name).SerializeToString())])
    exchange.wait()
    return {"nacked": bool(exchange.error), "error": exchange.error.strip(),
            "still_served": s.serves(fx.port, fx.states[final], fx.upstreams[final])["status"] == 200}  # fmt: skip


def vhds(fx: Fixture, workdir: Path, repeats: int) -> dict[str, Any]:
    """Hosts over VHDS on delta ADS, and what Envoy does with it, step by step (see `steps` in the result).

    Two listeners share the route config: one with the on_demand filter, one without. The server volunteers one
    host at first (with none, Envoy holds the listeners until `initial_fetch_timeout`: `vhds_empty_start`), so
    hosts can be loaded on demand into a tiny table; then it sends all but one of the rest in one response, and
    that one is loaded on demand into the full table."""
    name = fx.route_name
    names = [vhds_name(name, vs.host) for vs in fx.hosts]
    started = time.perf_counter()
    catalogue = {
        n: vhds_host(name, vh).SerializeToString(deterministic=True) for n, vh in zip(names, fx.vhosts, strict=True)
    }
    serialize_all_s = time.perf_counter() - started
    changed = names[fx.changed_at]
    states = [vhds_host(name, vh).SerializeToString(deterministic=True) for vh in fx.state_vhosts]
    small, with_port, full = fx.hosts[1], fx.hosts[2], fx.hosts[3]  # loaded on demand
    plain_port = next(p for p in distinct_free_ports(2) if p != fx.port)
    ads = ScriptedAds("delta", vhds_resources(fx, catalogue, plain_port), withheld=names[1:])
    steps: dict[str, Any] = {}
    with session(ads, workdir, f"vhds-{fx.n}") as s:
        s.settle({ROUTE: 1, LISTENER: 2, VHOST: 1})
        steps["envoy_subscribed"] = ads.asked_since(0, VHOST)
        steps["unloaded_host_without_on_demand_filter"] = s.ask_recording(plain_port, small)
        steps["unloaded_host_on_demand_one_host_table"] = s.ask_recording(fx.port, small)
        steps["same_host_again"] = s.ask(fx.port, small.host, probe_path(small))
        steps["unloaded_host_on_demand_host_header_with_port"] = s.ask_recording(fx.port, with_port, f":{fx.port}")
        steps["unknown_host_on_demand"] = s.ask(fx.port, "nobody.example.test", "/")
        # The server volunteers the other hosts at once (Envoy's VHDS subscription is a wildcard): the full table.
        bulk = ads.push(VHOST, [(n, b) for n, b in catalogue.items() if n not in names[1:4]])
        steps["all_hosts_in_one_response"] = {"send_to_ack_s": sig(bulk.wait()), "resources": bulk.resources,
                                              "wire_bytes": bulk.wire_bytes, "error": bulk.error}  # fmt: skip
        steps["unloaded_host_on_demand_full_table"] = s.ask_recording(fx.port, full)
        s.serves(fx.port, fx.states[0], fx.upstreams[0])
        exchanges = pushes(ads, repeats, lambda state: (VHOST, [(changed, states[state])]))
        final = last_state(repeats)
        served = {"on_demand_listener": s.serves(fx.port, fx.states[final], fx.upstreams[final]),
                  "plain_listener": s.serves(plain_port, fx.states[final], fx.upstreams[final])}  # fmt: skip
        rss = s.rss_mib()
        steps["route_config_rds_update"] = rds_update_keeps_hosts(s, fx, final, plain_port)
        removal = ads.push(VHOST, [], removed=[changed])
        removal.wait()
        steps["removed_host"] = {"error": removal.error, "then": s.ask_recording(plain_port, fx.states[final])}
    return {
        "scenario": "vhds", "protocol": "delta", "virtual_hosts": fx.n,
        "virtual_host_bytes": len(states[1]), "serialize_every_host_s": sig(serialize_all_s),
        "one_host_change": change_figures(exchanges), "served_after_change": served, "envoy_rss_mib": rss,
        "steps": steps,
    }  # fmt: skip


def vhds_resources(fx: Fixture, catalogue: dict[str, bytes], plain_port: int) -> dict[str, dict[str, bytes]]:
    listeners = [http_listener(fx.port, fx.route_name, on_demand=True), http_listener(plain_port, fx.route_name)]
    return {
        CLUSTER: fx.clusters,
        LISTENER: serialized(listeners, lambda m: m.name),
        ROUTE: {fx.route_name: vhds_route_config(fx.route_name).SerializeToString()},
        VHOST: catalogue,
    }


def vhds_empty_start(fx: Fixture, workdir: Path) -> dict[str, Any]:
    """A VHDS route config whose VHDS subscription is answered with no host: how long until Envoy serves."""
    catalogue = {vhds_name(fx.route_name, vs.host): vhds_host(fx.route_name, vh).SerializeToString()
                 for vs, vh in zip(fx.hosts, fx.vhosts, strict=True)}  # fmt: skip
    plain_port = next(p for p in distinct_free_ports(2) if p != fx.port)
    ads = ScriptedAds("delta", vhds_resources(fx, catalogue, plain_port), withheld=list(catalogue))
    with session(ads, workdir, f"vhds-empty-{fx.n}") as s:
        started = time.perf_counter()
        wait_for(lambda: s.envoy.stats("listener_manager.workers_started").get("listener_manager.workers_started"),
                 timeout=60, interval=0.05, what="Envoy's workers")  # fmt: skip
        serving_s = time.perf_counter() - started
        stats = s.envoy.stats(r"\.vhds\.")
        host = fx.hosts[1]
        return {"virtual_hosts": fx.n, "envoy_admin_up_to_listeners_serving_s": sig(serving_s),
                "vhds_init_fetch_timeout": sum(v for k, v in stats.items() if k.endswith("init_fetch_timeout")),
                "then_on_demand": s.ask_recording(fx.port, host)}  # fmt: skip


def rds_update_keeps_hosts(s: Session, fx: Fixture, final: int, plain_port: int) -> dict[str, Any]:
    """An RDS update of the VHDS route config (its VHDS source unchanged): does Envoy keep the hosts it has?"""
    config = vhds_route_config(fx.route_name)
    config.max_direct_response_body_size_bytes.value += 1
    mark = len(s.ads.subscriptions)
    exchange = s.ads.push(ROUTE, [(fx.route_name, config.SerializeToString())])
    seconds = exchange.wait()
    answer = s.ask(plain_port, fx.states[final].host, probe_path(fx.states[final]))
    return {"send_to_ack_s": sig(seconds), "error": exchange.error, "then": answer,
            "vhds_requests_it_caused": s.ads.asked_since(mark, VHOST)}  # fmt: skip


def split(
    fx: Fixture, protocol: str, workdir: Path, repeats: int, per_config: int, resend_all: bool = True
) -> dict[str, Any]:
    """The same hosts over ceil(N / per_config) route configs, one listener each; a change touches one config.
    Over SotW, `resend_all` sends every route config with it, as reconciler/xds does; otherwise the changed one."""
    chunks = [fx.vhosts[i : i + per_config] for i in range(0, fx.n, per_config)]
    ports = distinct_free_ports(len(chunks))
    names = [f"http.{p}" for p in ports]
    home = fx.changed_at // per_config
    configs = serialized([route_config_of(n, c) for n, c in zip(names, chunks, strict=True)], lambda m: m.name)
    states = []
    for vhost in fx.state_vhosts:
        chunk = list(chunks[home])
        chunk[fx.changed_at % per_config] = vhost
        states.append(route_config_of(names[home], chunk).SerializeToString(deterministic=True))
    listeners = serialized([http_listener(p, n) for p, n in zip(ports, names, strict=True)], lambda m: m.name)
    ads = ScriptedAds(protocol, {CLUSTER: fx.clusters, LISTENER: listeners, ROUTE: configs}, sotw_resend_all=resend_all)
    with session(ads, workdir, f"split-{protocol}{'' if resend_all else '-changed'}-{fx.n}") as s:
        s.settle({ROUTE: len(names), LISTENER: len(names)})
        s.serves(ports[home], fx.states[0], fx.upstreams[0])
        exchanges = pushes(ads, repeats, lambda state: (ROUTE, [(names[home], states[state])]))
        final = last_state(repeats)
        return {
            "scenario": "split", "protocol": protocol if resend_all else f"{protocol}, changed config only",
            "virtual_hosts": fx.n, "route_configs": len(names),
            "hosts_per_route_config": per_config, "route_config_bytes": len(states[1]),
            "one_host_change": change_figures(exchanges),
            "served_after_change": s.serves(ports[home], fx.states[final], fx.upstreams[final]),
            "envoy_rss_mib": s.rss_mib(),
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------- control plane


def control_plane(fx: Fixture, per_config: int) -> dict[str, Any]:
    """What the control plane spends on a one-host change, beyond translating the VirtualService itself."""
    config = fx.whole(1)
    vhost = fx.state_vhosts[1]
    small = route_config_of("http.1", fx.vhosts[:per_config])
    body = config.SerializeToString(deterministic=True)

    def frame() -> bytes:
        response = discovery_pb2.DiscoveryResponse(type_url=ROUTE, resources=[any_pb2.Any(type_url=ROUTE, value=body)])
        return response.SerializeToString()

    def repeat(fn: Callable[[], object], times: int) -> dict[str, float]:
        return summary([timed(fn)[0] for _ in range(times)])

    # What a cache of serialized hosts would do instead of serializing the whole config: join the bytes.
    vhosts = list(fx.vhosts)
    vhosts[fx.changed_at] = vhost
    entries = [virtual_hosts_field(h.SerializeToString(deterministic=True)) for h in vhosts]
    rest = route_config_of(config.name, []).SerializeToString(deterministic=True)
    head, tail = rest.split(config.name.encode(), 1)
    head += config.name.encode()  # field 1, the name; every other field comes after virtual_hosts (field 2)

    def join() -> bytes:
        return b"".join((head, *entries, tail))

    whole_reps = 5
    return {
        "virtual_hosts": fx.n,
        "route_config_bytes": len(body),
        "virtual_host_bytes": vhost.ByteSize(),
        "split_route_config_bytes": small.ByteSize(),
        "build_every_virtual_host_and_route_config_s": sig(fx.build_s),
        "serialize_route_config_s": repeat(partial(config.SerializeToString, deterministic=True), whole_reps),
        "frame_route_config_response_s": repeat(frame, whole_reps),
        "assemble_route_config_from_built_hosts_s": repeat(partial(fx.whole, 1), whole_reps),
        "join_route_config_from_serialized_hosts_s": repeat(join, whole_reps),
        "joined_bytes_identical": join() == body,
        "build_virtual_host_s": repeat(partial(floor.virtual_host, fx.states[1], fx.port), 101),
        "serialize_virtual_host_s": repeat(partial(vhost.SerializeToString, deterministic=True), 101),
        f"serialize_route_config_of_{per_config}_hosts_s": repeat(
            partial(small.SerializeToString, deterministic=True), 21
        ),
    }


# ---------------------------------------------------------------------------------------------- running it


NOTES = (
    "Envoy runs as reconciler/cli/localrun.py starts it: --concurrency 1, log level warning. At that level every "
    "apply logs one deprecation warning per route (RouteAction.max_grpc_timeout, which the pipeline sets as istiod "
    "does); at 1k hosts, whole config over delta, measured once, that is ~14% of the apply time (0.43 s; 0.37 s "
    "without the field).",
    "Only the probe routes' clusters exist (STATIC, at two echo upstreams); routes naming others are accepted "
    "(validate_clusters: false) and not exercised.",
)
SCENARIOS = ("whole-sotw", "whole-delta", "vhds", "split-sotw", "split-sotw-changed", "split-delta", "vhds-empty-start")


def run(sizes: Sequence[int], repeats: int, per_config: int, only: Sequence[str], workdir: Path) -> dict[str, Any]:
    upstreams = Upstreams()
    results: dict[str, Any] = {"machine": machine(), "repeats": repeats, "notes": NOTES, "control_plane": [],
                               "envoy": [], "checks": []}  # fmt: skip
    try:
        for n in sizes:
            _progress(f"N={n}: building the resources")
            fx = fixture(n, upstreams)
            results["control_plane"].append(control_plane(fx, per_config))
            jobs: dict[str, Callable[[], dict[str, Any]]] = {
                "whole-sotw": partial(whole, fx, "sotw", workdir, repeats),
                "whole-delta": partial(whole, fx, "delta", workdir, repeats),
                "vhds": partial(vhds, fx, workdir, repeats),
                "split-sotw": partial(split, fx, "sotw", workdir, repeats, per_config),
                "split-sotw-changed": partial(split, fx, "sotw", workdir, repeats, per_config, resend_all=False),
                "split-delta": partial(split, fx, "delta", workdir, repeats, per_config),
            }
            if n == sizes[0] and "vhds-empty-start" in only:  # ~15 s of waiting, the same at any N: once
                jobs["vhds-empty-start"] = partial(vhds_empty_start, fx, workdir)
            for scenario in (s for s in only if s in jobs):
                _progress(f"N={n}: {scenario}")
                started = time.monotonic()
                try:
                    result = jobs[scenario]()
                except Exception as exc:  # one broken scenario must not lose the others' figures
                    traceback.print_exc()
                    result = {"scenario": scenario, "virtual_hosts": n, "error": f"{type(exc).__name__}: {exc}"}
                results["checks" if scenario == "vhds-empty-start" else "envoy"].append(result)
                _progress(f"N={n}: {scenario} done in {time.monotonic() - started:.0f} s")
            del fx, jobs
            gc.collect()
    finally:
        upstreams.stop()
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | N | sent per change | send → ACK median (min to max) | Envoy RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results["envoy"]:
        if "error" in row:
            lines.append(f"| {row['scenario']} | {row['virtual_hosts']:,} | failed: {row['error']} | | |")
            continue
        change = row["one_host_change"]
        ack = change["send_to_ack_s"]
        label = f"{row['scenario']} ({row['protocol']})"
        lines.append(f"| {label} | {row['virtual_hosts']:,} | {change['wire_bytes']:,} B | "
                     f"{ack['median'] * 1000:.1f} ms ({ack['min'] * 1000:.1f} to {ack['max'] * 1000:.1f}) | "
                     f"{row['envoy_rss_mib']} MiB |")  # fmt: skip
    return "\n".join(lines)


def _progress(message: str) -> None:
    print(f"[route_split] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="virtual hosts per port, comma-separated")
    parser.add_argument("--repeats", type=int, default=7, help="one-host changes per scenario (median of them)")
    parser.add_argument("--hosts-per-config", type=int, default=100, help="hosts per route config when split")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"scenarios, comma-separated: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so every Envoy started is stopped
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="route-split-") as tmp:
        results = run([int(s) for s in args.sizes.split(",")], args.repeats, args.hosts_per_config, only, Path(tmp))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
