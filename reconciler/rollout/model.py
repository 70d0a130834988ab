"""The rollout state machine's states and the live record of one rollout (what status shows)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RolloutState(StrEnum):
    PENDING = "Pending"
    WAVE = "Wave"  # pushing wave k and waiting for ACKs and admin checks
    BAKING = "Baking"  # watching wave k's traffic and probes
    PROMOTED = "Promoted"
    REVERTING = "Reverting"
    REVERTED = "Reverted"
    SUPERSEDED = "Superseded"  # a newer commit replaced it mid-rollout


class Result(StrEnum):
    SUCCEEDED = "Succeeded"
    REVERTED = "Reverted"
    REJECTED = "Rejected"
    SUPERSEDED = "Superseded"
    INTERRUPTED = "Interrupted"  # the daemon stopped mid-rollout; it restarts from the first wave


class FailureKind(StrEnum):
    """Why a wave failed; the `reason` label of the reverts metric."""

    NACK = "nack"
    ACK_TIMEOUT = "ack_timeout"
    REJECTED_UPDATE = "update_rejected"
    NOT_READY = "not_ready"
    ERROR_RATE = "error_rate"
    PROBE = "probe"
    NODE_LOST = "node_lost"


@dataclass
class WaveReport:
    index: int
    nodes: list[str]
    state: str = "Pending"  # Pending | Pushing | Baking | Passed | Failed
    reason: str = ""
    started_at: float = 0.0
    acked_at: float = 0.0
    finished_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "nodes": self.nodes,
            "state": self.state,
            "reason": self.reason,
            "started_at": self.started_at,
            "acked_at": self.acked_at,
            "finished_at": self.finished_at,
        }


@dataclass
class Rollout:
    fleet: str
    revision: str
    version: str
    kind: str = "rollout"  # rollout | rollback (a revision whose config equals the last good one)
    state: RolloutState = RolloutState.PENDING
    wave: int = 0
    waves: list[WaveReport] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float = 0.0
    result: Result | None = None
    reason: str = ""
    failure: FailureKind | None = None
    unhealthy: dict[str, str] = field(default_factory=dict)  # node → why

    @property
    def finished(self) -> bool:
        return self.result is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "version": self.version,
            "kind": self.kind,
            "state": self.state.value,
            "wave": self.wave,
            "waves": [w.to_json() for w in self.waves],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result.value if self.result else None,
            "reason": self.reason,
        }
