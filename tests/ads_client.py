"""A scripted ADS client: one real gRPC stream to the daemon's server, driven request by request, as a test
plays Envoy. SotW and Delta streams share everything but the shape of their requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2

from reconciler.translate.snapshot import Snapshot
from reconciler.xds import AdsServer, start_grpc_server

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


class ScriptedStream(Generic[Request, Response]):
    def __init__(
        self, channel: grpc.aio.Channel, method: str, request_type: type[Request], response_type: type[Response],
        node: str, fleet: str,
    ) -> None:  # fmt: skip
        self._queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self._request_type = request_type
        self._node = {"id": node, "cluster": fleet}
        self._first = True
        self.call = channel.stream_stream(
            method, request_serializer=request_type.SerializeToString, response_deserializer=response_type.FromString
        )(self._requests())
        # Reading continuously: cancelling a pending read would cancel the whole call.
        self._responses: asyncio.Queue[Response] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[Request]:
        while (request := await self._queue.get()) is not None:
            yield request

    async def _read(self) -> None:
        async for response in self.call:
            self._responses.put_nowait(response)

    def _send(self, error: str = "", **fields: Any) -> None:
        """Queue a request; the first carries the node (as Envoy's set_node_on_first_message_only)."""
        request = self._request_type(**fields)
        if self._first:
            request.node.MergeFrom(self._request_type(node=self._node).node)  # type: ignore[attr-defined]
            self._first = False
        if error:
            request.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))  # type: ignore[attr-defined]
        self._queue.put_nowait(request)

    async def recv(self, timeout: float = 2.0) -> Response:
        getter = asyncio.ensure_future(self._responses.get())
        done, _ = await asyncio.wait({getter, self._reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._reader in done:
            self._reader.result()  # raises the call's error (e.g. the server's abort status)
        raise TimeoutError("no response")

    async def nothing(self, within: float = 0.3) -> bool:
        await asyncio.sleep(within)
        return self._responses.empty()

    def close(self) -> None:
        self._queue.put_nowait(None)
        self.call.cancel()
        self._reader.cancel()


async def until(condition: Callable[[], bool], what: Callable[[], str] = lambda: "") -> None:
    """Poll `condition` on the event loop (every 10 ms, up to 5 s): the server handles requests concurrently."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what()}")


@asynccontextmanager
async def serving(snapshot: Snapshot, fleet: str = "f") -> AsyncIterator[tuple[AdsServer, grpc.aio.Channel]]:
    """An ADS server on a free loopback port serving `snapshot` to `fleet`, and a channel to it."""
    server = AdsServer()
    server.set_fleet_snapshot(fleet, snapshot)
    server.set_known_fleets([fleet])
    grpc_server, port = await start_grpc_server(server, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, channel
    finally:
        await channel.close()
        await grpc_server.stop(grace=0)
