"""`reconciler status`: fetch the daemon's status JSON and print it for people."""

from __future__ import annotations

from typing import Any

import requests


def fetch_status(api: str, timeout: float = 5.0) -> dict[str, Any]:
    try:
        response = requests.get(f"{api.rstrip('/')}/api/v1/status", timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise OSError(str(exc)) from None
    payload: dict[str, Any] = response.json()
    return payload


def format_status(status: dict[str, Any]) -> str:
    lines = [f"head: {_short(status.get('head', ''))}"]
    if status.get("last_error"):
        lines.append(f"last error: {status['last_error']}")
    for fleet in status.get("fleets", []):
        lines.append(
            f"fleet {fleet['name']}: {fleet['phase']}  applied {_short(fleet['applied_revision'])}"
            f"  last good {_short(fleet['last_good_revision'])}"
        )
        if fleet.get("last_error"):
            lines.append(f"  rejected {_short(fleet.get('rejected_revision', ''))}: {fleet['last_error']}")
        for node in fleet.get("nodes", []):
            lines.append(f"  node {node['id']:<20} {node['state']:<8} revision {_short(node.get('revision', ''))}")
        if not fleet.get("nodes"):
            lines.append("  (no Envoy connected)")
    return "\n".join(lines)


def _short(sha: str) -> str:
    return sha[:12] if sha else "-"
