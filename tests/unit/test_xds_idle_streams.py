"""How the ADS server answers a stream, and what an idle one keeps (issue 6: ≤ 50 KB per connected Envoy,
measured by bench/fanout.py; here the rules that keep it there)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import reconciler.xds
from reconciler.translate.snapshot import CLUSTER, ROUTE
from reconciler.xds import AdsServer, NodeState, XdsEvent
from tests.ads_client import serving, until
from tests.unit.test_xds_delta import ONE, FakeDeltaEnvoy, versions
from tests.unit.test_xds_delta import snapshot as routes_snapshot
from tests.unit.test_xds_protocol import FakeEnvoy, snapshot

XDS_PACKAGE = Path(reconciler.xds.__file__).parent


@pytest.fixture
async def ads() -> AsyncIterator[tuple[AdsServer, grpc.aio.Channel]]:
    async with serving(snapshot("one")) as served:
        yield served


def xds_tasks() -> list[asyncio.Task[Any]]:
    """Tasks running the xDS server's own coroutines (gRPC's two tasks per call run gRPC's)."""

    def ours(task: asyncio.Task[Any]) -> bool:
        code = getattr(task.get_coro(), "cr_code", None)
        return code is not None and Path(code.co_filename).parent == XDS_PACKAGE

    return [task for task in asyncio.all_tasks() if ours(task)]


async def test_idle_streams_keep_no_task_of_their_own(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    server, channel = ads
    envoys = [FakeEnvoy(channel, node=f"n{i}") for i in range(3)]
    for envoy in envoys:
        envoy.send(CLUSTER)
        envoy.ack(await envoy.recv())
    server.set_fleet_snapshot("f", snapshot("two"))
    for envoy in envoys:
        envoy.ack(await envoy.recv())  # the push: answered by a task that ends once it is written
    await until(lambda: all(n.state() is NodeState.SYNCED for n in server.nodes("f")))
    await until(lambda: not xds_tasks(), lambda: f"tasks left: {xds_tasks()}")
    for envoy in envoys:
        envoy.close()


async def test_a_stream_that_cannot_be_answered_ends_with_an_error(
    ads: tuple[AdsServer, grpc.aio.Channel], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, channel = ads
    events: list[XdsEvent] = []
    server.subscribe(events.append)

    def broken(*_: Any) -> list[Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server, "_on_request", broken)
    envoy = FakeEnvoy(channel)
    envoy.send(CLUSTER)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await envoy.recv()
    assert ended.value.code() is grpc.StatusCode.UNKNOWN  # not left open with nobody answering
    await until(lambda: not server.nodes())
    assert [e.kind for e in events] == ["CONNECT", "DISCONNECT"]


async def test_delta_nack_after_an_ack_goes_back_to_what_was_acked(ads: tuple[AdsServer, grpc.aio.Channel]) -> None:
    """Two route responses in flight; the first is ACKed and the second NACKed: the node holds the first."""
    server, channel = ads
    server.set_fleet_snapshot("f", ONE)
    envoy = FakeDeltaEnvoy(channel)
    await envoy.sync()
    two, three, four = (routes_snapshot({"a": 1, "b": 1}, {"r1": tag}) for tag in ("two", "three", "four"))
    server.set_fleet_snapshot("f", two)
    sent_two = await envoy.recv()
    server.set_fleet_snapshot("f", three)
    sent_three = await envoy.recv()
    envoy.ack(sent_two)
    envoy.send(ROUTE, nonce=sent_three.nonce, error="rejected")
    await until(lambda: server.nodes("f")[0].state() is NodeState.NACKED)

    server.set_fleet_snapshot("f", two)
    assert await envoy.nothing()  # it holds r1 as in `two` already
    server.set_fleet_snapshot("f", four)
    assert versions(await envoy.recv()) == {"r1": four.of_type(ROUTE)["r1"].digest}
    envoy.close()
