"""`reconciler status` and `reconciler history`: read the daemon's API and print it for people."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import requests

from reconciler.api.auth import authorization_header


def fetch_json(api: str, path: str, token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    try:
        response = requests.get(f"{api.rstrip('/')}{path}", headers=authorization_header(token), timeout=timeout)
    except requests.RequestException as exc:
        raise OSError(str(exc)) from None
    if response.status_code in (401, 403):
        raise PermissionError(f"{_error_text(response)} (see --token-file / RECONCILER_TOKEN)")
    if response.status_code == 404:
        raise LookupError(_error_text(response))
    if not response.ok:
        raise OSError(f"HTTP {response.status_code}: {response.text[:200]}")
    payload: dict[str, Any] = response.json()
    return payload


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", response.reason))
    except ValueError:
        return response.text[:200] or str(response.reason)


def fetch_status(api: str, token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    return fetch_json(api, "/api/v1/status", token, timeout)


def format_status(status: dict[str, Any]) -> str:
    lines = [f"head: {_short(status.get('head', ''))}"]
    if status.get("last_error"):
        lines.append(f"last error: {status['last_error']}")
    for fleet in status.get("fleets", []):
        lines.append(
            f"fleet {fleet['name']}: {fleet['phase']}  applied {_short(fleet['applied_revision'])}"
            f"  last good {_short(fleet['last_good_revision'])}"
        )
        if fleet.get("quarantined_revision"):
            lines.append(f"  quarantined {_short(fleet['quarantined_revision'])}: {fleet.get('last_error', '')}")
        rollout = fleet.get("rollout")
        if rollout and not rollout.get("result"):
            lines.extend(_rollout_lines(rollout))
        for node in fleet.get("nodes", []):
            reason = f"  ({node['reason']})" if node.get("reason") else ""
            lines.append(
                f"  node {node['id']:<20} {node['state']:<9} revision {_short(node.get('revision', ''))}{reason}"
            )
        if not fleet.get("nodes"):
            lines.append("  (no Envoy connected)")
    return "\n".join(lines)


def _rollout_lines(rollout: dict[str, Any]) -> list[str]:
    waves = rollout.get("waves", [])
    lines = [f"  rollout {_short(rollout['revision'])}: {rollout['state']}, wave {rollout['wave']} of {len(waves)}"]
    for wave in waves:
        marker = {"Passed": "✓", "Failed": "✗", "Pending": " "}.get(wave["state"], "…")
        lines.append(f"    {marker} wave {wave['index']}: {wave['state']:<8} {' '.join(wave['nodes'])}")
    return lines


def format_history(fleet: str, history: list[dict[str, Any]]) -> str:
    lines = [f"history of fleet {fleet} (newest first)"]
    for entry in history:
        when = datetime.fromtimestamp(entry["finished_at"], tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        took = entry["finished_at"] - entry["started_at"]
        lines.append(
            f"  {when}Z  {_short(entry['revision'])}  {entry['kind']:<8} {entry['result']:<11} {took:6.1f}s"
            + (f"  {entry['reason']}" if entry.get("reason") else "")
        )
    if not history:
        lines.append("  (nothing yet)")
    return "\n".join(lines)


def watch(api: str, token: str | None, interval: float) -> None:
    """Redraw the status until interrupted (Ctrl-C)."""
    while True:
        try:
            text = format_status(fetch_status(api, token))
        except OSError as exc:
            text = f"cannot reach the daemon API at {api}: {exc}"
        print("\033[2J\033[H" + text, flush=True)
        time.sleep(interval)


def _short(sha: str) -> str:
    return sha[:12] if sha else "-"
