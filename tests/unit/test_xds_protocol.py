"""The ADS server's protocol rules, exercised with a real gRPC client acting as a scripted Envoy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from reconciler.protowire import length_delimited
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot
from reconciler.xds import AdsServer, NodeState, XdsEvent, start_grpc_server
from reconciler.xds.server import response_body
from tests.ads_client import ScriptedStream, serving, until

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def snapshot(tag: str, routes: tuple[str, ...] = ("http.80",)) -> Snapshot:
    return Snapshot.build(
        [
            cluster_pb2.Cluster(name=f"c-{tag}"),
            endpoint_pb2.ClusterLoadAssignment(cluster_name=f"c-{tag}"),
            listener_pb2.Listener(name="l"),
            *(route_pb2.RouteConfiguration(name=name, virtual_hosts=[{"name": tag}]) for name in routes),
        ]
    )


class FakeEnvoy(ScriptedStream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse]):
    """One SotW ADS stream: `send` a request, `recv` the next response (with a timeout)."""

    def __init__(self, channel: grpc.aio.Channel, fleet: str = "f", node: str = "n1") -> None:
        super().__init__(channel, METHOD, discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse, node, fleet)

    def send(self, type_url: str, names: tuple[str, ...] = (), nonce: str = "", version: str = "",
             error: str = "") -> None:  # fmt: skip
        self._send(error, type_url=type_url, resource_names=list(names), response_nonce=nonce, version_info=version)

    def ack(self, response: discovery_pb2.DiscoveryResponse, names: tuple[str, ...] = ()) -> None:
        self.send(response.type_url, names, response.nonce, response.version_info)


@pytest.fixture
async def ads() -> AsyncIterator[tuple[AdsServer, grpc.aio.Channel]]:
    async with serving(snapshot("one")) as served:
        yield served


def names_of(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for any_ in response.resources:
        cls = {CLUSTER: cluster_pb2.Cluster, LISTENER: listener_pb2.Listener, ROUTE: route_pb2.RouteConfiguration}
        if any_.type_url == ENDPOINT:
            out.append(endpoint_pb2.ClusterLoadAssignment.FromString(any_.value).cluster_name)
        else:
            out.append(cls[any_.type_url].FromString(any_.value).name)
    return out


async def test_ack_sync_and_ordered_push(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    events: list[XdsEvent] = []
    server.subscribe(events.append)
    envoy = FakeEnvoy(channel)
    responses = {}
    for type_url, names in ((CLUSTER, ()), (ENDPOINT, ("c-one",)), (LISTENER, ()), (ROUTE, ("http.80",))):
        envoy.send(type_url, names)
        responses[type_url] = await envoy.recv()
        assert responses[type_url].type_url == type_url
        assert responses[type_url].control_plane.identifier == "gateway-reconciler"
        envoy.ack(responses[type_url], names)
    assert names_of(responses[CLUSTER]) == ["c-one"]
    assert await envoy.nothing()  # ACKs of the current versions need no answer
    (node,) = server.nodes("f")
    assert node.state() is NodeState.SYNCED and node.synced_version == server.fleet_snapshot("f").version  # type: ignore[union-attr]
    assert [e.kind for e in events].count("ACK") == 4

    server.set_fleet_snapshot("f", snapshot("two"))
    pushed = [await envoy.recv() for _ in range(3)]
    # Make-before-break order; the listener did not change, so it is not sent again.
    assert [r.type_url for r in pushed] == [CLUSTER, ENDPOINT, ROUTE]
    assert await envoy.nothing()
    assert names_of(pushed[0]) == ["c-two"]
    assert node.state() is NodeState.STALE
    envoy.close()


async def test_stale_nonce_ignored_and_nack_not_resent(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    events: list[XdsEvent] = []
    server.subscribe(events.append)
    envoy = FakeEnvoy(channel)
    envoy.send(ROUTE, ("http.80",))
    first = await envoy.recv()
    envoy.ack(first, ("http.80",))
    server.set_fleet_snapshot("f", snapshot("two"))
    second = await envoy.recv()
    envoy.send(ROUTE, ("http.80", "http.81"), nonce=first.nonce)  # stale: answers an older response
    assert await envoy.nothing()

    envoy.send(ROUTE, ("http.80",), nonce=second.nonce, version=first.version_info, error="bad regex")
    assert await envoy.nothing()  # a NACKed version is never resent: no NACK loop
    nack = [e for e in events if e.kind == "NACK"]
    assert nack and nack[0].error == "bad regex" and nack[0].version == second.version_info
    (node,) = server.nodes("f")
    assert node.state() is NodeState.NACKED and node.errors() == {ROUTE: "bad regex"}

    server.set_fleet_snapshot("f", snapshot("three"))  # a newer version is sent again
    third = await envoy.recv()
    assert third.version_info not in (first.version_info, second.version_info)
    envoy.close()


async def test_named_subscription_gets_only_named_resources(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    server.set_fleet_snapshot("f", snapshot("one", routes=("http.80", "http.81")))
    envoy = FakeEnvoy(channel)
    envoy.send(ROUTE, ("http.81",))
    response = await envoy.recv()
    assert names_of(response) == ["http.81"]
    envoy.ack(response, ("http.81",))
    envoy.send(ROUTE, ("http.80", "http.81"), nonce=response.nonce, version=response.version_info)
    widened = await envoy.recv()  # a changed subscription is answered even with an unchanged version
    assert names_of(widened) == ["http.80", "http.81"]
    envoy.close()


def two_route_configs(first: str, second: str) -> Snapshot:
    return Snapshot.build(
        [route_pb2.RouteConfiguration(name=name, virtual_hosts=[{"name": tag}]) for name, tag in
         (("http.80", first), ("http.81", second))]
    )  # fmt: skip


async def test_route_responses_leave_out_what_the_node_acked(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    """SotW RDS may carry only changed route configurations; after a NACK or a new subscription, all again."""
    server, channel = ads
    both = ("http.80", "http.81")
    server.set_fleet_snapshot("f", two_route_configs("a", "a"))
    envoy = FakeEnvoy(channel)
    envoy.send(ROUTE, both)
    first = await envoy.recv()
    assert names_of(first) == ["http.80", "http.81"]
    await acked(server, envoy, first, both)
    server.set_fleet_snapshot("f", two_route_configs("a", "b"))
    changed = await envoy.recv()
    assert names_of(changed) == ["http.81"] and changed.version_info != first.version_info
    envoy.send(ROUTE, both, nonce=changed.nonce, version=first.version_info, error="bad route")
    await until(lambda: server.nodes("f")[0].state() is NodeState.NACKED)
    server.set_fleet_snapshot("f", two_route_configs("a", "c"))
    after_nack = await envoy.recv()  # Envoy may hold part of a rejected response: everything again
    assert names_of(after_nack) == ["http.80", "http.81"]
    await acked(server, envoy, after_nack, both)
    server.set_fleet_snapshot("f", two_route_configs("d", "c"))
    assert names_of(await envoy.recv()) == ["http.80"]
    envoy.close()


async def acked(server: AdsServer, envoy: FakeEnvoy, response: discovery_pb2.DiscoveryResponse,
                names: tuple[str, ...]) -> None:  # fmt: skip
    """ACK `response` and wait until the server has taken the ACK."""
    envoy.ack(response, names)
    await until(lambda: server.nodes("f")[0].types[response.type_url].acked_version == response.version_info)


@pytest.mark.parametrize("version", ["v1", ""])
def test_response_bodies_are_protobufs_own_serialization(version: str) -> None:
    bodies = [route_pb2.RouteConfiguration(name=f"r{i}", virtual_hosts=[{"name": "x" * 200 * i}]).SerializeToString()
              for i in range(3)] + [b""]  # fmt: skip
    control_plane = base_pb2.ControlPlane(identifier="gateway-reconciler")
    expected = discovery_pb2.DiscoveryResponse(
        version_info=version,
        type_url=ROUTE,
        resources=[any_pb2.Any(type_url=ROUTE, value=body) for body in bodies],
        control_plane=control_plane,
    ).SerializeToString(deterministic=True)
    wrapped = length_delimited(6, control_plane.SerializeToString())
    # each body as one piece, and as the pieces a route configuration joins from (split anywhere)
    assert response_body(version, ROUTE, [(body,) for body in bodies], wrapped) == expected
    split = [(body[:7], body[7:50], body[50:]) for body in bodies]
    assert response_body(version, ROUTE, split, wrapped) == expected


async def test_endpoints_resent_when_clusters_change() -> None:
    """Envoy activates an updated cluster only after a new EDS response, even with unchanged endpoints."""
    same_endpoints = endpoint_pb2.ClusterLoadAssignment(cluster_name="c")
    before = Snapshot.build([cluster_pb2.Cluster(name="c"), same_endpoints])
    after = Snapshot.build([cluster_pb2.Cluster(name="c", connect_timeout={"seconds": 3}), same_endpoints])
    assert before.type_versions[ENDPOINT] != after.type_versions[ENDPOINT]


async def test_unknown_fleet_and_missing_identity_refused(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    _, channel = ads
    stranger = FakeEnvoy(channel, fleet="other")
    stranger.send(CLUSTER)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stranger.recv()
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert "fleet 'other' is not defined" in (refused.value.details() or "")

    anonymous = FakeEnvoy(channel, fleet="")
    anonymous.send(CLUSTER)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await anonymous.recv()
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_nodes_wait_until_fleets_are_known() -> None:
    server = AdsServer()  # no set_known_fleets yet: the daemon has not loaded any config
    grpc_server, port = await start_grpc_server(server, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    envoy = FakeEnvoy(channel)
    envoy.send(CLUSTER)
    assert await envoy.nothing(0.3)  # held, not refused
    server.set_fleet_snapshot("f", snapshot("one"))
    server.set_known_fleets(["f"])
    assert (await envoy.recv()).type_url == CLUSTER
    envoy.close()
    await channel.close()
    await grpc_server.stop(grace=0)


async def test_second_server_on_same_port_fails() -> None:
    first, port = await start_grpc_server(AdsServer(), "127.0.0.1:0")
    with pytest.raises(RuntimeError):
        await start_grpc_server(AdsServer(), f"127.0.0.1:{port}")
    await first.stop(grace=0)
