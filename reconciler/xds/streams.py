"""Per-stream SotW state: what each connected Envoy subscribed to, was sent, ACKed and NACKed.

All of it is touched only from the event loop, by the stream's own handler, so it needs no locks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.translate.snapshot import PUSH_ORDER, Snapshot, XdsResource


class NodeState(StrEnum):
    SYNCED = "SYNCED"  # ACKed every type of its assigned snapshot
    STALE = "STALE"  # still applying, or has not asked for some type yet
    NACKED = "NACKED"  # rejected the last response of some type


# What a response delivered: the subscribed names and the resources of the type they were picked from.
Delivered = tuple[frozenset[str] | None, Mapping[str, XdsResource]]


@dataclass(slots=True)
class TypeState:
    names: frozenset[str] | None = None  # None: wildcard
    subscribed: bool = False
    sent_version: str = ""
    nonce: str = ""
    acked_version: str = ""
    nacked_version: str = ""
    error: str = ""
    sent_resources: Delivered | None = None
    acked_resources: Delivered | None = None  # what the node holds for sure; None after a NACK (Envoy may hold a mix)


@dataclass(slots=True)
class NodeStream:
    stream_id: int
    node_id: str
    fleet: str
    metadata: dict[str, Any]
    snapshot: Snapshot
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeState] = field(default_factory=dict)
    nonce_counter: int = 0
    synced_version: str = ""  # the snapshot version this node last ACKed completely

    def next_nonce(self) -> str:
        self.nonce_counter += 1
        return f"{self.stream_id}-{self.nonce_counter}"

    @property
    def admin_url(self) -> str:
        return str(self.metadata.get("admin_url", ""))

    @property
    def listen_address(self) -> str:
        return str(self.metadata.get("listen_address", ""))

    def state(self) -> NodeState:
        subscribed = [(t, s) for t, s in self.types.items() if s.subscribed]
        if any(s.nacked_version and s.nacked_version == s.sent_version for _, s in subscribed):
            return NodeState.NACKED
        if subscribed and all(
            s.acked_version == self.snapshot.type_versions[t] or self._nothing_to_deliver(t, s) for t, s in subscribed
        ):
            return NodeState.SYNCED
        return NodeState.STALE

    def _nothing_to_deliver(self, type_url: str, state: TypeState) -> bool:
        """A by-name type (EDS, RDS, SDS) whose names the snapshot has none of cannot lag behind it.

        Envoy sends no ACK for a type it no longer watches (its last cluster or listener went away), and the
        request that dropped the names may carry a stale nonce and be ignored; waiting for that ACK would
        leave the node STALE forever.
        """
        if state.names is None:
            return False
        resources = self.snapshot.of_type(type_url)
        return not any(name in resources for name in state.names)

    def refresh_synced(self) -> None:
        if self.state() is NodeState.SYNCED:
            self.synced_version = self.snapshot.version

    def errors(self) -> dict[str, str]:
        return {t: s.error for t, s in self.types.items() if s.error}

    def view(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "fleet": self.fleet,
            "admin_url": self.admin_url,
            "state": self.state().value,
            "assigned_version": self.snapshot.version,
            "synced_version": self.synced_version,
            "connected_at": self.connected_at,
            "types": {
                t.rsplit(".", 1)[-1]: {"acked": s.acked_version, "sent": s.sent_version, "error": s.error}
                for t, s in sorted(self.types.items(), key=lambda kv: _order(kv[0]))
            },
        }


def _order(type_url: str) -> int:
    return PUSH_ORDER.index(type_url) if type_url in PUSH_ORDER else len(PUSH_ORDER)
