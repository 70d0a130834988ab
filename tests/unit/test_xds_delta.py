"""Delta ADS protocol rules, exercised with a real gRPC client acting as a scripted Envoy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message

from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot, XdsResource
from reconciler.xds import AdsServer, NodeState, XdsEvent
from reconciler.xds.delta import DeltaTypeState
from tests.ads_client import ScriptedStream, serving, until

DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
Delta = discovery_pb2.DeltaDiscoveryResponse


def snapshot(clusters: dict[str, int], routes: dict[str, str] | None = None) -> Snapshot:
    """Clusters by name (the value sets connect_timeout, so changing it changes the cluster), their endpoints,
    one listener, and route configs by name (the value names their virtual host)."""
    messages: list[Message] = []
    for name, timeout in clusters.items():
        messages.append(cluster_pb2.Cluster(name=name, connect_timeout={"seconds": timeout}))
        messages.append(endpoint_pb2.ClusterLoadAssignment(cluster_name=name))
    messages.append(listener_pb2.Listener(name="l"))
    messages.extend(
        route_pb2.RouteConfiguration(name=n, virtual_hosts=[{"name": h}]) for n, h in (routes or {}).items()
    )
    return Snapshot.build(messages)


ONE = snapshot({"a": 1, "b": 1}, {"r1": "one"})


class FakeDeltaEnvoy(ScriptedStream[discovery_pb2.DeltaDiscoveryRequest, Delta]):
    """One delta ADS stream: `send` a request, `recv` the next response (with a timeout)."""

    def __init__(self, channel: grpc.aio.Channel, node: str = "n1", fleet: str = "f") -> None:
        super().__init__(channel, DELTA, discovery_pb2.DeltaDiscoveryRequest, Delta, node, fleet)

    def send(self, type_url: str, subscribe: tuple[str, ...] = (), unsubscribe: tuple[str, ...] = (),
             nonce: str = "", error: str = "", initial: dict[str, str] | None = None) -> None:  # fmt: skip
        self._send(
            error,
            type_url=type_url,
            resource_names_subscribe=subscribe,
            resource_names_unsubscribe=unsubscribe,
            response_nonce=nonce,
            initial_resource_versions=initial or {},
        )

    def ack(self, response: Delta) -> None:
        self.send(response.type_url, nonce=response.nonce)

    async def exchange(self, type_url: str, subscribe: tuple[str, ...] = (), **kwargs: object) -> Delta:
        """Send a request, receive the answer and ACK it."""
        self.send(type_url, subscribe, **kwargs)  # type: ignore[arg-type]
        response = await self.recv()
        self.ack(response)
        return response

    async def sync(self, clusters: tuple[str, ...] = ("a", "b"), routes: tuple[str, ...] = ("r1",)) -> dict[str, Delta]:
        """Subscribe as Envoy does (CDS, EDS, LDS, RDS) and ACK everything."""
        return {
            CLUSTER: await self.exchange(CLUSTER),
            ENDPOINT: await self.exchange(ENDPOINT, clusters),
            LISTENER: await self.exchange(LISTENER),
            ROUTE: await self.exchange(ROUTE, routes),
        }


@pytest.fixture
async def ads() -> AsyncIterator[tuple[AdsServer, grpc.aio.Channel]]:
    async with serving(ONE) as served:
        yield served


def names(response: Delta) -> list[str]:
    return [r.name for r in response.resources]


def versions(response: Delta) -> dict[str, str]:
    return {r.name: r.version for r in response.resources}


async def until_synced(server: AdsServer, version: str, node: str = "n1") -> None:
    def synced() -> bool:
        streams = [s for s in server.nodes("f") if s.node_id == node]
        return bool(streams) and streams[0].synced_version == version and streams[0].state() is NodeState.SYNCED

    await until(synced, lambda: f"{node} synced {version}: {[s.view() for s in server.nodes('f')]}")


async def test_initial_sync_with_per_resource_versions(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    events: list[XdsEvent] = []
    server.subscribe(events.append)
    envoy = FakeDeltaEnvoy(channel)
    got = await envoy.sync()
    assert versions(got[CLUSTER]) == {n: r.digest for n, r in ONE.of_type(CLUSTER).items()}
    assert names(got[ENDPOINT]) == ["a", "b"] and names(got[LISTENER]) == ["l"] and names(got[ROUTE]) == ["r1"]
    assert got[CLUSTER].control_plane.identifier == "gateway-reconciler"
    assert got[CLUSTER].system_version_info == ONE.type_versions[CLUSTER]
    await until_synced(server, ONE.version)
    (node,) = server.nodes("f")
    assert node.state() is NodeState.SYNCED
    assert node.view()["types"]["Cluster"]["acked"] == ONE.type_versions[CLUSTER]
    assert [e.kind for e in events].count("ACK") == 4
    assert await envoy.nothing()  # ACKs need no answer
    envoy.close()


async def test_update_sends_only_what_changed_in_push_order(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    envoy = FakeDeltaEnvoy(channel)
    await envoy.sync()
    two = snapshot({"a": 1, "b": 2}, {"r1": "two"})
    server.set_fleet_snapshot("f", two)
    pushed = [await envoy.recv() for _ in range(3)]
    # Cluster b changed, and its unchanged endpoints go again: the updated cluster stays warming until Envoy
    # gets a new endpoints response. Cluster a and the listener did not change.
    assert [(r.type_url, names(r)) for r in pushed] == [(CLUSTER, ["b"]), (ENDPOINT, ["b"]), (ROUTE, ["r1"])]
    assert await envoy.nothing()
    for response in pushed:
        envoy.ack(response)
    await until_synced(server, two.version)
    envoy.close()


async def test_a_resource_joined_from_parts_arrives_whole(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    """Route configurations of megabytes are sent from the pieces translation joined them from (one copy):
    Envoy must get the very bytes, name and version protobuf would have serialized."""
    server, channel = ads
    envoy = FakeDeltaEnvoy(channel)
    await envoy.sync()
    whole = route_pb2.RouteConfiguration(name="r1", virtual_hosts=[{"name": "h1"}, {"name": "h2"}])
    body = whole.SerializeToString(deterministic=True)
    pieces = (body[:3], body[3:9], body[9:])
    joined = XdsResource.joined_on_read(ROUTE, "r1", "v-from-parts", pieces)
    server.set_fleet_snapshot("f", ONE.replacing([joined]))
    pushed = await envoy.recv()
    assert [(r.name, r.version, r.resource.type_url) for r in pushed.resources] == [("r1", "v-from-parts", ROUTE)]
    assert pushed.resources[0].resource.value == body
    envoy.close()


async def test_removals_follow_updates_with_referrers_first(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    envoy = FakeDeltaEnvoy(channel)
    await envoy.sync()
    # Cluster a and route r1 go, cluster c and route r2 come: both additions before any removal, and the
    # route goes before the cluster it may have pointed at.
    after = snapshot({"b": 1, "c": 1}, {"r2": "two"})
    server.set_fleet_snapshot("f", after)
    pushed = [await envoy.recv() for _ in range(4)]
    assert [(r.type_url, names(r), list(r.removed_resources)) for r in pushed] == [
        (CLUSTER, ["c"], []),
        (ROUTE, [], ["r1"]),  # r1 is still subscribed: told it no longer exists...
        (CLUSTER, [], ["a"]),
        (ENDPOINT, [], ["a"]),
    ]
    # ...and the new r2 is sent once Envoy asks for it, like the new cluster's endpoints.
    cla = await envoy.exchange(ENDPOINT, ("c",))
    assert names(cla) == ["c"]
    route = await envoy.exchange(ROUTE, ("r2",))
    assert names(route) == ["r2"]
    for response in pushed:
        envoy.ack(response)
    envoy.send(ROUTE, unsubscribe=("r1",))
    envoy.send(ENDPOINT, unsubscribe=("a",))
    await until_synced(server, after.version)
    assert await envoy.nothing()  # unsubscribing needs no answer
    envoy.close()


async def test_nack_keeps_error_and_is_not_resent(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    events: list[XdsEvent] = []
    server.subscribe(events.append)
    envoy = FakeDeltaEnvoy(channel)
    await envoy.sync()
    bad = snapshot({"a": 1, "b": 1}, {"r1": "bad"})
    server.set_fleet_snapshot("f", bad)
    rds = await envoy.recv()
    envoy.send(ROUTE, nonce=rds.nonce, error="invalid regex")
    assert await envoy.nothing()  # no NACK loop
    (node,) = server.nodes("f")
    assert node.state() is NodeState.NACKED and node.errors() == {ROUTE: "invalid regex"}
    nack = next(e for e in events if e.kind == "NACK")
    assert (nack.type_url, nack.error, nack.snapshot_version) == (ROUTE, "invalid regex", bad.version)

    fixed = snapshot({"a": 1, "b": 1}, {"r1": "fixed"})
    server.set_fleet_snapshot("f", fixed)
    again = await envoy.recv()
    assert names(again) == ["r1"] and again.resources[0].version == fixed.of_type(ROUTE)["r1"].digest
    envoy.ack(again)
    await until_synced(server, fixed.version)
    assert node.state() is NodeState.SYNCED
    envoy.close()


async def test_reconnect_with_initial_versions_sends_only_the_difference(
    ads: tuple[AdsServer, grpc.aio.Channel],
) -> None:
    server, channel = ads
    first = FakeDeltaEnvoy(channel)
    had = await first.sync()
    first.close()
    server.set_fleet_snapshot("f", snapshot({"b": 1, "c": 1}, {"r1": "one"}))  # a went, c came, r1 is the same
    again = FakeDeltaEnvoy(channel)
    cds = await again.exchange(CLUSTER, initial=versions(had[CLUSTER]))
    assert (names(cds), list(cds.removed_resources)) == (["c"], ["a"])
    eds = await again.exchange(ENDPOINT, ("b", "c"), initial={"b": versions(had[ENDPOINT])["b"]})
    assert names(eds) == ["c"]
    lds = await again.exchange(LISTENER, initial=versions(had[LISTENER]))
    assert (names(lds), list(lds.removed_resources)) == ([], [])  # the first wildcard answer, empty
    again.send(ROUTE, ("r1",), initial=versions(had[ROUTE]))
    assert await again.nothing()  # it has r1 at this version already
    (node,) = server.nodes("f")
    types = {t: s for t, s in node.types.items() if isinstance(s, DeltaTypeState)}
    assert {t.rsplit(".", 1)[1]: s.resources_sent for t, s in types.items()} == {
        "Cluster": 1, "ClusterLoadAssignment": 1, "Listener": 0, "RouteConfiguration": 0,
    }  # fmt: skip
    await until_synced(server, node.snapshot.version)
    again.close()


async def test_named_subscriptions(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    server.set_fleet_snapshot("f", snapshot({"a": 1}, {"r1": "one", "r2": "two"}))
    envoy = FakeDeltaEnvoy(channel)
    assert names(await envoy.exchange(ROUTE, ("r1",))) == ["r1"]
    widened = await envoy.exchange(ROUTE, ("r2",))
    assert names(widened) == ["r2"]  # only the new name
    resubscribed = await envoy.exchange(ROUTE, ("r1",))
    assert names(resubscribed) == ["r1"]  # known, yet sent again: the client may have forgotten it
    missing = await envoy.exchange(ROUTE, ("nope",))
    assert (names(missing), list(missing.removed_resources)) == ([], ["nope"])
    envoy.send(ROUTE, unsubscribe=("r2", "never-subscribed"))
    assert await envoy.nothing()
    (node,) = server.nodes("f")
    assert node.types[ROUTE].names == frozenset({"r1", "nope"})
    envoy.close()


async def test_wildcard_rules(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    _, channel = ads
    legacy = FakeDeltaEnvoy(channel, node="legacy")
    assert names(await legacy.exchange(CLUSTER)) == ["a", "b"]  # nothing named: legacy wildcard
    explicit = FakeDeltaEnvoy(channel, node="explicit")
    assert names(await explicit.exchange(CLUSTER, ("*",))) == ["a", "b"]
    # A name that is also in the wildcard set, unsubscribed while the wildcard holds: answered with it.
    await explicit.exchange(CLUSTER, ("a",))
    explicit.send(CLUSTER, unsubscribe=("a",))
    assert names(await explicit.recv()) == ["a"]
    named = FakeDeltaEnvoy(channel, node="named")
    assert names(await named.exchange(CLUSTER, ("b",))) == ["b"]  # named clusters: only those
    for envoy in (legacy, explicit, named):
        envoy.close()


async def test_subscription_change_with_stale_nonce_is_honoured(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    server.set_fleet_snapshot("f", snapshot({"a": 1, "b": 1}, {"r1": "one", "r2": "two"}))
    envoy = FakeDeltaEnvoy(channel)
    first = await envoy.exchange(ROUTE, ("r1",))
    envoy.send(ROUTE, ("r2",), nonce=first.nonce)  # an old nonce, a new name
    assert names(await envoy.recv()) == ["r2"]
    envoy.close()


async def test_sotw_and_delta_nodes_share_fleet_and_overrides(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    delta = FakeDeltaEnvoy(channel, node="delta")
    await delta.sync()
    sotw = channel.stream_stream(
        SOTW,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )
    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

    async def outgoing() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await requests.get()

    call = sotw(outgoing())
    for type_url, wanted in ((CLUSTER, []), (ENDPOINT, ["a", "b"]), (LISTENER, []), (ROUTE, ["r1"])):
        request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=wanted)
        if type_url == CLUSTER:
            request.node.id, request.node.cluster = "sotw", "f"
        requests.put_nowait(request)
        response = await call.read()
        requests.put_nowait(discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=wanted,
                                                           response_nonce=response.nonce,
                                                           version_info=response.version_info))  # fmt: skip
    await until_synced(server, ONE.version, "sotw")
    await until_synced(server, ONE.version, "delta")
    assert {n.node_id: n.state() for n in server.nodes("f")} == {"delta": NodeState.SYNCED, "sotw": NodeState.SYNCED}

    # A rollout's per-node override reaches the delta node alone.
    canary = snapshot({"a": 1, "b": 1}, {"r1": "canary"})
    server.set_node_snapshot("f", "delta", canary)
    rds = await delta.recv()
    assert names(rds) == ["r1"]
    delta.ack(rds)
    await until_synced(server, canary.version, "delta")
    assert {n.node_id: n.synced_version for n in server.nodes("f")} == {"delta": canary.version, "sotw": ONE.version}
    call.cancel()
    delta.close()
