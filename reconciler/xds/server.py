"""A grpc.aio State-of-the-World ADS server.

One handler coroutine per Envoy stream reads its requests; they and the snapshot changes of the stream go to
its `Responder`, which decides and writes the answers one at a time, in arrival order.
Protocol rules (xDS docs, `shared/reference/xds-protocol.md` §1): ACK vs NACK by `error_detail`,
requests with a stale nonce are ignored, a NACKed version is never resent (no NACK loops), pushes go in
make-before-break order (CDS → EDS → LDS → RDS), LDS and CDS are wildcard and always sent whole.
The same plumbing serves incremental (delta) ADS streams, whose protocol lives in `reconciler.xds.delta`.

Responses are tuples of byte strings (a shared pre-serialized body, then this stream's nonce), joined by the
response serializer only as gRPC sends them: a stream holds no copy of a body of its own.

Memory per connected Envoy is what bounds a server's fan-out (issue 6: ≤ 50 KB per idle stream, measured by
bench/fanout.py), so an idle stream keeps little: no task or queue of its own (see `Responder`), no request,
shared name sets and type URLs, and two metadata fields of its node.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from reconciler.protowire import field_header, length_delimited
from reconciler.translate.snapshot import LISTENER, PUSH_ORDER, ROUTE, WILDCARD_TYPES, Snapshot, XdsResource
from reconciler.xds.streams import NodeStream, TypeState

log = structlog.get_logger("reconciler.xds")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
_BODY_CACHE_ENTRIES = 256
DEFAULT_BIND_PREFIX = "0.0.0.0_"
# Interned subscription sets; cleared if clients ever ask for more distinct sets than this.
_NAME_SETS: dict[frozenset[str], frozenset[str]] = {}
_MAX_NAME_SETS = 4096
_SNAPSHOT_CHANGED = object()
_SERVED_TYPES = {type_url: type_url for type_url in PUSH_ORDER}
# Of a node's metadata, what the server reads (NodeStream.admin_url, .listen_address); the rest is not kept.
_NODE_METADATA_KEYS = ("admin_url", "listen_address")


@dataclass(frozen=True)
class XdsEvent:
    """An ACK, NACK, connect or disconnect, as other stages (status, rollout) see it."""

    kind: str  # ACK | NACK | CONNECT | DISCONNECT
    fleet: str
    node: str
    type_url: str = ""
    version: str = ""
    nonce: str = ""
    error: str = ""
    snapshot_version: str = ""


Listener = Callable[[XdsEvent], None]
# A DiscoveryResponse or DeltaDiscoveryResponse as consecutive pieces of its wire form (protobuf messages
# concatenate): shared, cached bodies first, the per-stream nonce last.
Response = tuple[bytes, ...]
RequestHandler = Callable[[NodeStream, Any], list[Response]]
PushHandler = Callable[[NodeStream], list[Response]]


class RequestReader:
    """A stream's requests, read with `context.read()`, after `first` if given (one an outer handler read).

    gRPC's own request iterator keeps the last request alive while it waits for the next: for an idle Envoy,
    its last ACK, which names every resource of that type it holds (~1 KB in bench/fanout.py, hundreds of KB
    for the endpoints of 10k clusters). This keeps none.
    """

    __slots__ = ("_context", "_first")

    def __init__(self, context: grpc.aio.ServicerContext, first: Any = None) -> None:
        self._context, self._first = context, first

    def __aiter__(self) -> RequestReader:
        return self

    async def __anext__(self) -> Any:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        request = await self._context.read()
        if request is grpc.aio.EOF:
            raise StopAsyncIteration
        return request


class Responder:
    """Answers one stream: its requests and snapshot changes, one at a time and in the order they came, each
    answer written before the next is decided, so responses go out in the order they were decided.

    It works in a task that lives only while there is something to answer. An idle stream then holds no task,
    queue or generator of its own, just its handler waiting for the next request: a reader task feeding an
    asyncio.Queue cost ~2 KB more per connected Envoy. Only the event loop touches it.
    """

    __slots__ = (
        "_ads",
        "_context",
        "_handler",
        "_items",
        "_on_request",
        "_push_changed",
        "_stream",
        "_task",
        "failure",
    )

    def __init__(
        self,
        ads: AdsServer,
        stream: NodeStream,
        context: grpc.aio.ServicerContext,
        on_request: RequestHandler,
        push_changed: PushHandler,
    ) -> None:
        self._ads, self._stream, self._context = ads, stream, context
        self._on_request, self._push_changed = on_request, push_changed
        self._handler = asyncio.current_task()  # the stream's handler, which ends the RPC if answering fails
        self._items: list[Any] = []  # requests and _SNAPSHOT_CHANGED, not yet answered
        self._task: asyncio.Task[None] | None = None
        self.failure: Exception | None = None

    def put(self, item: Any) -> None:
        self._items.append(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._answer())

    async def finished(self) -> None:
        """Wait until everything put so far is answered."""
        if self._task is not None:
            await self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _answer(self) -> None:
        stream = self._stream
        try:
            while self._items:
                item = self._items.pop(0)
                if item is _SNAPSHOT_CHANGED:
                    stream.snapshot = self._ads.assigned(stream.fleet, stream.node_id) or stream.snapshot
                    responses = self._push_changed(stream)
                else:
                    responses = self._on_request(stream, item)
                del item  # answered: not kept while the stream idles
                for response in responses:
                    await self._context.write(response)
        except Exception as error:  # a failed write or a bug: the stream cannot go on; its handler ends the RPC
            self.failure = error
            if self._handler is not None:
                self._handler.cancel()
        finally:
            self._task = None


class AdsServer:
    """Serves each node the snapshot assigned to it: its fleet's snapshot unless a node override is set."""

    def __init__(self, identifier: str = "gateway-reconciler") -> None:
        self._control_plane = control_plane_field(identifier)
        self._fleet_snapshots: dict[str, Snapshot] = {}
        self._node_snapshots: dict[tuple[str, str], Snapshot] = {}
        self._known_fleets: set[str] = set()
        self._fleets_known = asyncio.Event()
        self._streams: dict[int, tuple[NodeStream, Responder]] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Listener] = []
        self._bodies: OrderedDict[tuple[str, str, frozenset[str] | None, str, str], bytes] = OrderedDict()
        from reconciler.xds.delta import DeltaProtocol  # it builds on this module, so it is imported late

        self._delta = DeltaProtocol(self, identifier)

    # ------------------------------------------------------------------ control (event loop only)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def set_known_fleets(self, fleets: Iterable[str]) -> None:
        """Which fleets exist. Until first called, connecting nodes wait instead of being refused."""
        self._known_fleets = set(fleets)
        self._fleets_known.set()

    def set_fleet_snapshot(self, fleet: str, snapshot: Snapshot) -> None:
        self._fleet_snapshots[fleet] = snapshot
        self._notify(lambda s: s.fleet == fleet)

    def set_node_snapshot(self, fleet: str, node: str, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            self._node_snapshots.pop((fleet, node), None)
        else:
            self._node_snapshots[(fleet, node)] = snapshot
        self._notify(lambda s: s.fleet == fleet and s.node_id == node)

    def clear_node_snapshots(self, fleet: str) -> None:
        """Drop every per-node override of `fleet`: all its nodes get the fleet's snapshot again."""
        for key in [k for k in self._node_snapshots if k[0] == fleet]:
            del self._node_snapshots[key]
        self._notify(lambda s: s.fleet == fleet)

    def fleet_snapshot(self, fleet: str) -> Snapshot | None:
        return self._fleet_snapshots.get(fleet)

    def nodes(self, fleet: str | None = None) -> list[NodeStream]:
        return sorted(
            (s for s, _ in self._streams.values() if fleet is None or s.fleet == fleet),
            key=lambda s: (s.fleet, s.node_id, s.stream_id),
        )

    def assigned(self, fleet: str, node: str) -> Snapshot | None:
        """The snapshot a node is to get: its override, else its fleet's."""
        return self._node_snapshots.get((fleet, node)) or self._fleet_snapshots.get(fleet)

    def _notify(self, which: Callable[[NodeStream], bool]) -> None:
        for stream, responder in self._streams.values():
            if which(stream):
                responder.put(_SNAPSHOT_CHANGED)

    def emit(self, event: XdsEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken subscriber must not take the stream down
                log.exception("xds.listener_failed", event=event.kind)

    # ------------------------------------------------------------------ gRPC plumbing

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._stream,
                    request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                    response_serializer=_join,
                ),
                "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._delta.stream,
                    request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                    response_serializer=_join,
                ),
            },
        )

    async def _stream(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        # A coroutine function: grpc.aio then lets the handler read and write (context.read/write) as it likes.
        await self.serve(requests, context, self._on_request, self._push_changed)

    async def serve(
        self,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext,
        on_request: RequestHandler,
        push_changed: PushHandler,
    ) -> None:
        """One ADS stream of either flavour: `on_request` answers a request, `push_changed` a snapshot change.

        `requests` is gRPC's request iterator, which is left unused, or a `RequestReader` (from a wrapping handler).
        """
        reader = requests if isinstance(requests, RequestReader) else RequestReader(context)
        first = await anext(reader, None)
        if first is None:
            return
        stream = await self._open(first, context)
        responder = Responder(self, stream, context, on_request, push_changed)
        self._streams[stream.stream_id] = (stream, responder)
        log.info("xds.connected", fleet=stream.fleet, node=stream.node_id, snapshot=stream.snapshot.version)
        self.emit(XdsEvent("CONNECT", stream.fleet, stream.node_id, snapshot_version=stream.snapshot.version))
        try:
            responder.put(first)
            del first
            async for request in reader:
                responder.put(request)
                del request  # while it waits for the next one, an idle stream keeps no request alive (~1 KB)
            await responder.finished()  # the client half-closed: answer what it sent before
        except asyncio.CancelledError:
            if responder.failure is None:
                raise
            raise responder.failure from None  # gRPC logs it and ends the RPC with UNKNOWN
        finally:
            responder.stop()
            self._streams.pop(stream.stream_id, None)
            log.info("xds.disconnected", fleet=stream.fleet, node=stream.node_id)
            self.emit(XdsEvent("DISCONNECT", stream.fleet, stream.node_id))

    async def _open(
        self,
        request: discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest,
        context: grpc.aio.ServicerContext,
    ) -> NodeStream:
        node = request.node
        fleet, node_id = node.cluster, node.id
        if not fleet or not node_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the Envoy node must set node.cluster (its fleet) and node.id; see `reconciler bootstrap`",
            )
        await self._fleets_known.wait()
        snapshot = self.assigned(fleet, node_id)
        if fleet not in self._known_fleets or snapshot is None:
            log.warning("xds.unknown_fleet", fleet=fleet, node=node_id)
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"fleet {fleet!r} is not defined by a Fleet manifest in the config repo; "
                f"node {node_id!r} gets no configuration",
            )
        assert snapshot is not None
        metadata = {key: node.metadata[key] for key in _NODE_METADATA_KEYS if key in node.metadata}
        return NodeStream(next(self._ids), node_id, fleet, metadata, snapshot)

    # ------------------------------------------------------------------ protocol

    def _on_request(self, stream: NodeStream, request: discovery_pb2.DiscoveryRequest) -> list[Response]:
        type_url = served_type(request.type_url)
        if type_url is None:
            return []  # a type we do not serve (e.g. SDS before issue 3): stay silent, as istiod does
        state = stream.types.setdefault(type_url, TypeState())
        if request.response_nonce:
            if request.response_nonce != state.nonce:
                return []  # stale: a newer response is in flight and supersedes this request
            if request.HasField("error_detail"):
                self.record_nack(stream, type_url, state, request.error_detail.message)
            else:
                state.acked_version, state.acked_resources, state.error = state.sent_version, state.sent_resources, ""
                stream.refresh_synced()
                self.emit(
                    XdsEvent(
                        "ACK",
                        stream.fleet,
                        stream.node_id,
                        type_url,
                        state.sent_version,
                        state.nonce,
                        snapshot_version=stream.snapshot.version,
                    )
                )
        names = self._requested_names(type_url, request)
        first = not state.subscribed
        changed = names != state.names
        state.subscribed, state.names = True, names
        # A NACKed version stays the sent version, so it is not sent again until the snapshot moves.
        if first or changed or stream.snapshot.type_versions[type_url] != state.sent_version:
            return [self._response(stream, type_url, state)]
        return []

    def record_nack(self, stream: NodeStream, type_url: str, state: TypeState, error: str) -> None:
        state.nacked_version, state.acked_resources, state.error = state.sent_version, None, error
        log.warning(
            "xds.nack",
            fleet=stream.fleet,
            node=stream.node_id,
            type=type_url.rsplit(".", 1)[-1],
            version=state.sent_version,
            error=error.strip(),
        )
        self.emit(
            XdsEvent(
                "NACK",
                stream.fleet,
                stream.node_id,
                type_url,
                state.sent_version,
                state.nonce,
                error,
                stream.snapshot.version,
            )
        )

    def _push_changed(self, stream: NodeStream) -> list[Response]:
        bodies = []
        for type_url in PUSH_ORDER:
            state = stream.types.get(type_url)
            if state and state.subscribed and stream.snapshot.type_versions[type_url] != state.sent_version:
                bodies.append(self._response(stream, type_url, state))
        return bodies

    @staticmethod
    def _requested_names(type_url: str, request: discovery_pb2.DiscoveryRequest) -> frozenset[str] | None:
        names = frozenset(request.resource_names)
        if type_url in WILDCARD_TYPES and (not names or "*" in names):
            return None
        return shared_names(names)

    def _response(self, stream: NodeStream, type_url: str, state: TypeState) -> Response:
        version = stream.snapshot.type_versions[type_url]
        resources = stream.snapshot.of_type(type_url)
        base = _delta_base(type_url, state, resources)
        body = self._body(stream, type_url, state.names, base)
        state.sent_version, state.nonce = version, stream.next_nonce()
        state.sent_resources = (state.names, resources)
        # Protobuf messages concatenate: the shared body plus this stream's nonce is one DiscoveryResponse.
        nonce: bytes = discovery_pb2.DiscoveryResponse(nonce=state.nonce).SerializeToString()
        return body, nonce

    def _body(self, stream: NodeStream, type_url: str, names: frozenset[str] | None, base: Base) -> bytes:
        snapshot = stream.snapshot
        # A node may ask its default listeners to bind its own address (node.metadata.listen_address):
        # several fleet members on one host. Only listener bodies differ, once per distinct address.
        rebind = stream.listen_address if type_url == LISTENER else ""
        key = (type_url, snapshot.type_versions[type_url], names, rebind, base[0] if base else "")
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
            return body
        resources = snapshot.of_type(type_url)
        chosen = resources.values() if names is None else [resources[n] for n in sorted(names) if n in resources]
        if base is not None:
            chosen = [r for r in chosen if base[1].get(r.name, _GONE).digest != r.digest]
        bodies = [(rebound_listener(r.body, rebind),) if rebind else r.pieces for r in chosen]
        body = response_body(key[1], type_url, bodies, self._control_plane)
        self._bodies[key] = body
        if len(self._bodies) > _BODY_CACHE_ENTRIES:
            self._bodies.popitem(last=False)
        return body


def shared_names(names: frozenset[str]) -> frozenset[str]:
    """`names` as one set shared by every stream that subscribes to the same names: nodes of a fleet ask for the
    same ones, so this keeps one set (and one copy of each name) instead of one per stream."""
    if len(_NAME_SETS) > _MAX_NAME_SETS:
        _NAME_SETS.clear()
    return _NAME_SETS.setdefault(names, names)


def served_type(type_url: str) -> str | None:
    """The shared constant for a type URL this server serves (None if it does not): a stream keys its per-type
    state by it instead of keeping its own copy of each request's string."""
    return _SERVED_TYPES.get(type_url)


# The version a node ACKed and the resources it then held: a response may leave out what it holds already.
Base = tuple[str, Mapping[str, XdsResource]] | None
_GONE = XdsResource("", "", b"", "")


def _delta_base(type_url: str, state: TypeState, resources: Mapping[str, XdsResource]) -> Base:
    """What a SotW route response may leave out: route configurations the node ACKed and that did not change.

    SotW lets a response for a by-name type carry only changed resources (absence is no removal; Envoy keeps
    the others), so a one-host change re-sends one route configuration, not every one of the node (issue 6:
    bench/route_split.py measured 2.2 s → 24 ms of Envoy work at 10k hosts in 100 configurations). Only RDS:
    a changed cluster needs its endpoints re-sent even when they did not change, so EDS stays whole. The base
    is used only while the node's subscription is what it ACKed, after no NACK, and when something is left
    to send (a response must still deliver a new version for the node to ACK).
    """
    acked = state.acked_resources
    if type_url != ROUTE or acked is None or acked[0] != state.names or state.names is None:
        return None
    held = acked[1]
    if not any(held.get(name, _GONE).digest != resources[name].digest for name in state.names if name in resources):
        return None
    return state.acked_version, held


_RESPONSE_FIELDS = discovery_pb2.DiscoveryResponse.DESCRIPTOR.fields_by_name
_RESOURCES_FIELD = _RESPONSE_FIELDS["resources"].number
_ANY_VALUE_FIELD = any_pb2.Any.DESCRIPTOR.fields_by_name["value"].number
_ANY_TYPE_URL_FIELD = any_pb2.Any.DESCRIPTOR.fields_by_name["type_url"].number


def control_plane_field(identifier: str) -> bytes:
    """DiscoveryResponse.control_plane naming this server, encoded once for every response body."""
    control_plane = base_pb2.ControlPlane(identifier=identifier).SerializeToString()
    return length_delimited(_RESPONSE_FIELDS["control_plane"].number, control_plane)


def response_body(version: str, type_url: str, bodies: Iterable[Sequence[bytes]], control_plane: bytes) -> bytes:
    """A DiscoveryResponse (without nonce) holding `bodies` (each resource's body as the pieces it joins from,
    `XdsResource.pieces`) as Any, written field by field: each resource's bytes are copied once, where joining
    a route configuration and then building the message and serializing it copies them three times (42 MB of
    route configuration: 151 ms → a few ms, on the event loop). Byte for byte the deterministic serialization."""
    parts = [length_delimited(_RESPONSE_FIELDS["version_info"].number, version.encode())] if version else []
    for pieces in bodies:
        parts += any_field(_RESOURCES_FIELD, type_url, pieces)
    parts += [length_delimited(_RESPONSE_FIELDS["type_url"].number, type_url.encode()), control_plane]
    return b"".join(parts)


def any_field(number: int, type_url: str, pieces: Sequence[bytes]) -> list[bytes]:
    """The pieces of field `number` holding an Any of `type_url` whose value joins from `pieces`: to be joined
    with the rest of the message. Per resource of a response of thousands, on the event loop: nothing in it is
    looked up or encoded twice."""
    any_type_url = _any_type_url(type_url)
    size = sum(map(len, pieces))
    value_header = field_header(_ANY_VALUE_FIELD, size) if size else b""
    return [field_header(number, len(any_type_url) + len(value_header) + size), any_type_url, value_header, *pieces]


@functools.cache
def _any_type_url(type_url: str) -> bytes:
    """Any.type_url encoded, once per type URL (the served types are a handful)."""
    return length_delimited(_ANY_TYPE_URL_FIELD, type_url.encode())


def _join(response: Response) -> bytes:
    return b"".join(response)


def rebound_listener(listener_body: bytes, address: str) -> bytes:
    """The listener bound to `address` if it has the default bind (named `0.0.0.0_<port>` as istiod names it);
    a Gateway server's explicit `bind` is kept."""
    listener = listener_pb2.Listener.FromString(listener_body)
    if not listener.name.startswith(DEFAULT_BIND_PREFIX):
        return listener_body
    listener.address.socket_address.address = address
    return bytes(listener.SerializeToString(deterministic=True))


async def start_grpc_server(
    ads: AdsServer, listen: str, credentials: grpc.ServerCredentials | None = None,
    wrap: Callable[[grpc.GenericRpcHandler], grpc.GenericRpcHandler] | None = None,
) -> tuple[grpc.aio.Server, int]:  # fmt: skip
    """Start the ADS gRPC server on `listen` (host:port, port 0 for any free port); returns the bound port.

    `credentials` serve TLS (see `reconciler.xds.security.server_credentials`); `wrap` decorates the ADS
    handler (e.g. node → fleet authorization).
    """
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),  # a second daemon on the same port must fail, not share it
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            # No channelz (gRPC's introspection service, which this server does not expose): it tracks every
            # connection and call for it, ~0.5 KB per connected Envoy. Envoys never see the difference.
            ("grpc.enable_channelz", 0),
        ]
    )
    handler = ads.handler()
    server.add_generic_rpc_handlers((wrap(handler) if wrap else handler,))
    try:
        port = server.add_secure_port(listen, credentials) if credentials else server.add_insecure_port(listen)
    except RuntimeError:
        await server.stop(grace=None)  # release it on this loop; the caller sees the bind error
        raise
    await server.start()
    return server, port
