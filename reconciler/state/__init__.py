"""The state stage: durable fleet state and history in SQLite."""

from reconciler.state.store import FleetRecord, HistoryEntry, StateError, StateStore

__all__ = ["FleetRecord", "HistoryEntry", "StateError", "StateStore"]
