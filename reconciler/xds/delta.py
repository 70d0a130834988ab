"""Incremental ADS (`DeltaAggregatedResources`), on the AdsServer's snapshots, node registry, overrides and events.

Per stream and type (`DeltaTypeState`) the server remembers what the client has: `known` (name → version,
including what is in flight) and `acked` (what the client confirmed; the same dict while nothing is in flight).
A push sends only the resources whose version differs from `known`, and `removed_resources` for those that
left the snapshot. Protocol rules (`shared/reference/xds-protocol.md` §1.5-1.8, §1.15):

- A resource's version is its content digest (`XdsResource.digest`; for a node's rebound listener, the digest
  of the rebound body), so it means the same on any replica and after a restart.
- LDS and CDS are wildcard when the first request names nothing (legacy wildcard) or subscribes `*`; a legacy
  wildcard ends when the client names resources. Other types are by name: `resource_names_subscribe` and
  `_unsubscribe` change the set. A (re)subscribed name is always (re)sent, since the client may have forgotten
  it, and a subscribed name the snapshot lacks is answered in `removed_resources`, so the client stops waiting.
- A reconnecting client's `initial_resource_versions` count as known and acknowledged: nothing it already has
  at that version is sent again.
- Subscription changes are honoured whatever their nonce; the nonce only ties an ACK or a NACK
  (`error_detail`) to a response. A NACK reverts `known` to `acked` (Envoy may have applied part of the
  response) and nothing is resent until the snapshot moves: no NACK loop.
- Make-before-break: updates go in PUSH_ORDER (CDS, EDS, LDS, RDS, SDS) and removals only after all updates,
  listeners and routes before the clusters and endpoints they pointed at. SotW cannot do this: its CDS
  response is the whole set, so a cluster goes in the same breath as a route still using it is replaced.
- Status and rollouts see delta nodes as SotW nodes: a type's `acked_version` becomes the snapshot's type
  version once every response that brought the client to it is ACKed, so `NodeStream.state()` and
  `synced_version` keep their meaning.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from reconciler.protowire import field_header, length_delimited
from reconciler.translate.snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SECRET,
    WILDCARD_TYPES,
    XdsResource,
)
from reconciler.xds.server import (
    AdsServer,
    Response,
    XdsEvent,
    any_field,
    rebound_listener,
    served_type,
    shared_names,
)
from reconciler.xds.streams import NodeStream, TypeState

WILDCARD = "*"
ABSENT = ""  # the version `known` holds for a subscribed name the client was told does not exist
# Removals go after every update, and what points at a resource goes before it.
REMOVAL_ORDER = (LISTENER, ROUTE, CLUSTER, ENDPOINT, SECRET)
_CACHE_ENTRIES = 65_536
# A resource to send: name, version and its body as the pieces it joins from (`XdsResource.pieces`).
Update = tuple[str, str, tuple[bytes, ...]]
_RESOURCE_FIELDS = discovery_pb2.Resource.DESCRIPTOR.fields_by_name
_RESOURCES_FIELD = discovery_pb2.DeltaDiscoveryResponse.DESCRIPTOR.fields_by_name["resources"].number
# The one empty name set every state starts from and goes back to: each `frozenset()` is a new 216-byte object.
NO_NAMES: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Sent:
    """What one response carried: name → version, ABSENT (told it does not exist) or None (removed)."""

    type_version: str
    changes: dict[str, str | None]


@dataclass(slots=True)
class DeltaTypeState(TypeState):
    wildcard: bool = False
    legacy_wildcard: bool = False  # wildcard because the client named nothing yet
    # Immutable sets, replaced on change: most streams of a fleet share them (an empty set costs 216 bytes).
    explicit: frozenset[str] = NO_NAMES  # names subscribed by name, interned (`shared_names`)
    known: dict[str, str] = field(default_factory=dict)
    # While nothing is in flight, `acked` is `known` itself (one dict per type and stream, not two): a send
    # copies it first.
    acked: dict[str, str] = field(default_factory=dict)
    pending: dict[str, Sent] = field(default_factory=dict)  # by nonce
    resend: frozenset[str] = NO_NAMES  # (re)subscribed names to send even when known
    basis: str = ""  # the type version `known` was last brought to; "" forces a full comparison
    resources_sent: int = 0


class DeltaProtocol:
    """The delta flavour of an ADS stream; `AdsServer.serve` runs the stream, this decides what to send."""

    def __init__(self, ads: AdsServer, identifier: str) -> None:
        self._ads = ads
        self._identifier = identifier
        self._entries: OrderedDict[tuple[str, str, str], tuple[bytes, ...]] = OrderedDict()  # encoded Resources
        self._rebound: OrderedDict[tuple[str, str], tuple[str, tuple[bytes, ...]]] = OrderedDict()

    async def stream(
        self, requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> None:
        await self._ads.serve(requests, context, self.on_request, self.push_changed)

    # ------------------------------------------------------------------ requests

    def on_request(self, stream: NodeStream, request: discovery_pb2.DeltaDiscoveryRequest) -> list[Response]:
        type_url = served_type(request.type_url)
        if type_url is None:
            return []  # a type we do not serve: stay silent, as for SotW
        state = stream.types.get(type_url)
        if not isinstance(state, DeltaTypeState):
            state = stream.types[type_url] = DeltaTypeState()
        if request.response_nonce:
            self._settle(stream, type_url, state, request)
        first, was_wildcard = not state.subscribed, state.wildcard
        self._subscribe(stream, type_url, state, request)
        responses = []
        if first or (state.wildcard and not was_wildcard):
            updates, removed = self._compare(stream, type_url, state, None)
            # Envoy waits for the first answer of a wildcard type (initial_fetch_timeout), even an empty one.
            if updates or removed or state.wildcard:
                responses.append(self._send(stream, type_url, state, updates, removed))
            self._finish(stream, type_url, state)
        elif state.resend:
            updates, removed = self._compare(stream, type_url, state, state.resend)
            if updates or removed:
                responses.append(self._send(stream, type_url, state, updates, removed))
            state.resend = NO_NAMES
        stream.refresh_synced()
        return responses

    def _settle(
        self, stream: NodeStream, type_url: str, state: DeltaTypeState, request: discovery_pb2.DeltaDiscoveryRequest
    ) -> None:
        sent = state.pending.pop(request.response_nonce, None)
        if sent is None:
            return  # not ours to settle: from before a NACK reset, or a stream restart
        if request.HasField("error_detail"):
            state.known, state.basis = state.acked, ""
            state.pending.clear()
            self._ads.record_nack(stream, type_url, state, request.error_detail.message)
            return
        if state.pending:  # more in flight: the client confirmed this response only
            for name, version in sent.changes.items():
                if version is None:
                    state.acked.pop(name, None)
                else:
                    state.acked[name] = version
        else:  # it holds all it was sent
            state.acked = state.known
        self._settle_version(state)
        stream.refresh_synced()
        event = XdsEvent("ACK", stream.fleet, stream.node_id, type_url, sent.type_version, request.response_nonce,
                         snapshot_version=stream.snapshot.version)  # fmt: skip
        self._ads.emit(event)

    def _subscribe(
        self, stream: NodeStream, type_url: str, state: DeltaTypeState, request: discovery_pb2.DeltaDiscoveryRequest
    ) -> None:
        subscribe, unsubscribe = set(request.resource_names_subscribe), set(request.resource_names_unsubscribe)
        initial = request.initial_resource_versions
        if not state.subscribed:
            state.subscribed = True
            # Interned: every reconnecting node of a fleet names the same resources at the same versions.
            state.known = {sys.intern(name): sys.intern(version) for name, version in initial.items()}
            state.acked = state.known  # the same dict until something is sent (memory per stream)
            state.legacy_wildcard = state.wildcard = type_url in WILDCARD_TYPES and not subscribe and not unsubscribe
        if WILDCARD in subscribe:
            state.wildcard, state.legacy_wildcard = True, False
        elif subscribe and state.legacy_wildcard:  # naming resources ends a legacy wildcard
            state.wildcard = state.legacy_wildcard = False
        named, dropped = subscribe - {WILDCARD}, unsubscribe - subscribe - {WILDCARD}
        state.explicit = shared_names((state.explicit | named) - dropped)
        resend = state.resend | (named - set(initial))  # on a reconnect these say what it has
        if WILDCARD in unsubscribe:
            state.wildcard = state.legacy_wildcard = False
            self._forget(state, [n for n in state.known if n not in state.explicit])
        resources = stream.snapshot.of_type(type_url)
        # A name dropped but still wanted through the wildcard is said again, or the client drops it.
        still_wanted = {name for name in dropped if name in resources} if state.wildcard else set()
        state.resend = (resend - dropped) | still_wanted or NO_NAMES
        self._forget(state, dropped - still_wanted)  # an unsubscribe needs no answer (phantom ones included)
        state.names = None if state.wildcard else state.explicit

    @staticmethod
    def _forget(state: DeltaTypeState, names: Iterable[str]) -> None:
        for name in names:
            state.known.pop(name, None)
            state.acked.pop(name, None)

    # ------------------------------------------------------------------ pushes

    def push_changed(self, stream: NodeStream) -> list[Response]:
        responses: list[Response] = []
        removals: dict[str, tuple[DeltaTypeState, list[str]]] = {}
        touched: list[tuple[str, DeltaTypeState]] = []
        for type_url in PUSH_ORDER:
            state = stream.types.get(type_url)
            if not isinstance(state, DeltaTypeState) or not state.subscribed:
                continue
            if state.basis == stream.snapshot.type_versions[type_url] and not state.resend:
                continue  # nothing of this type moved for this node: no work at all
            changed, removed = self._compare(stream, type_url, state, None)
            if changed:
                responses.append(self._send(stream, type_url, state, changed, []))
            if removed:
                removals[type_url] = (state, removed)
            touched.append((type_url, state))
        for type_url in REMOVAL_ORDER:
            if type_url in removals:
                state, removed = removals[type_url]
                responses.append(self._send(stream, type_url, state, [], removed))
        for type_url, state in touched:
            self._finish(stream, type_url, state)
        stream.refresh_synced()
        return responses

    def _rewarm(self, stream: NodeStream, clusters: list[str]) -> None:
        """An updated cluster becomes active only once Envoy gets a new response for its endpoints, even an
        unchanged one (istiod's forced EDS push for warming clusters; SotW ties EDS versions to CDS for it)."""
        state = stream.types.get(ENDPOINT)
        if not isinstance(state, DeltaTypeState):
            state = stream.types[ENDPOINT] = DeltaTypeState()  # a reconnecting Envoy asks for them next
        state.resend |= frozenset(clusters)

    def _compare(
        self, stream: NodeStream, type_url: str, state: DeltaTypeState, only: Iterable[str] | None
    ) -> tuple[list[Update], list[str]]:
        """What to send (name, version, body) and what to remove, for `only` these names or all of interest."""
        resources = stream.snapshot.of_type(type_url)
        rebind = stream.listen_address if type_url == LISTENER else ""
        if only is None:
            candidates = set(resources) | state.explicit if state.wildcard else set(state.explicit)
            removed = {n for n, v in state.known.items() if v != ABSENT and n not in resources}
        else:
            candidates, removed = set(only), set()
        updates = []
        for name in sorted(candidates):
            resource = resources.get(name)
            if resource is None:
                if name in state.explicit and (name not in state.known or name in state.resend):
                    removed.add(name)  # subscribed, but it does not exist: say so once
                continue
            version, pieces = self._version_and_pieces(resource, rebind)
            if state.known.get(name) != version or name in state.resend:
                updates.append((name, version, pieces))
        return updates, sorted(removed)

    def _send(
        self,
        stream: NodeStream,
        type_url: str,
        state: DeltaTypeState,
        updates: list[Update],
        removed: list[str],
    ) -> Response:
        type_version = stream.snapshot.type_versions[type_url]
        changes: dict[str, str | None] = {name: version for name, version, _ in updates}
        for name in removed:
            changes[name] = ABSENT if name in state.explicit else None
        if changes and state.acked is state.known:  # what goes in flight now is not acknowledged yet
            state.acked = dict(state.known)
        for name, version in changes.items():
            if version is None:
                state.known.pop(name, None)
            else:
                state.known[name] = version
        if type_url == CLUSTER and updates:
            self._rewarm(stream, [name for name, _, _ in updates])
        state.nonce = stream.next_nonce()
        state.pending[state.nonce] = Sent(type_version, changes)
        state.resources_sent += len(updates)
        head = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=type_version, type_url=type_url, removed_resources=removed
        )
        head.control_plane.identifier = self._identifier
        entries = [self._entry(type_url, name, version, pieces) for name, version, pieces in updates]
        tail = discovery_pb2.DeltaDiscoveryResponse(nonce=state.nonce)
        return (head.SerializeToString(), *itertools.chain.from_iterable(entries), tail.SerializeToString())

    def _finish(self, stream: NodeStream, type_url: str, state: DeltaTypeState) -> None:
        """`known` now matches the snapshot for this type: record the version being delivered."""
        version = stream.snapshot.type_versions[type_url]
        if version != state.sent_version:
            state.nacked_version = ""  # a NACK was about an earlier push
        state.sent_version = state.basis = version
        state.resend = NO_NAMES
        self._settle_version(state)

    @staticmethod
    def _settle_version(state: DeltaTypeState) -> None:
        """Once every response of the latest push is ACKed (and none was NACKed), the client has the type version."""
        if not state.pending and state.nacked_version != state.sent_version and state.sent_version:
            state.acked_version, state.error = state.sent_version, ""

    # ------------------------------------------------------------------ serialized pieces (shared by all streams)

    def _version_and_pieces(self, resource: XdsResource, rebind: str) -> tuple[str, tuple[bytes, ...]]:
        if not rebind:
            return resource.digest, resource.pieces
        key = (resource.digest, rebind)
        found = self._rebound.get(key)
        if found is None:
            body = rebound_listener(resource.body, rebind)
            found = self._rebound[key] = (hashlib.sha256(body).hexdigest()[:16], (body,))
            _trim(self._rebound)
        return found

    def _entry(self, type_url: str, name: str, version: str, pieces: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """One `resources` entry of a DeltaDiscoveryResponse, encoded once per resource version: as pieces that
        the response's join copies, so a route configuration of megabytes is copied once, not joined first."""
        key = (type_url, name, version)
        entry = self._entries.get(key)
        if entry is None:
            resource = [
                length_delimited(_RESOURCE_FIELDS["version"].number, version.encode()),
                *any_field(_RESOURCE_FIELDS["resource"].number, type_url, pieces),
                length_delimited(_RESOURCE_FIELDS["name"].number, name.encode()),
            ]
            header = field_header(_RESOURCES_FIELD, sum(map(len, resource)))
            entry = self._entries[key] = (header, *resource)
            _trim(self._entries)
        else:
            self._entries.move_to_end(key)
        return entry


def _trim(cache: OrderedDict[Any, Any]) -> None:
    while len(cache) > _CACHE_ENTRIES:
        cache.popitem(last=False)
