"""The daemon's memory at each N: a real `reconciler run` on a bare git repo of N VirtualServices, read from
/proc once it has built and applied every fleet (no Envoys connected: this is the config's own cost). Then, on
that same daemon, the time from a pushed one-VS commit (API trigger) to the rollout it starts (fetch, read,
build and gate; the snapshot is stored next), as the daemon itself records it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from bench.common import rss_kib, sig, summary, write_tree
from bench.fleet_bench import settled
from bench.synthetic import RepoShape, SyntheticRepo, change_destination, generate, single_gateway_vs
from tests.support import DaemonProcess, GitRemote, wait_for

# One-VS commits timed on the daemon once it has applied the repo.
COMMITS = 5


def daemon_rss(n: int, workdir: Path) -> dict[str, Any]:
    repo = generate(RepoShape(n))
    remote = GitRemote(workdir / "git")
    write_tree(remote.work, repo.files())
    sha = remote.commit_and_push("synthetic repo")
    (workdir / "daemon").mkdir(parents=True)
    daemon = DaemonProcess(workdir / "daemon", remote.url, poll="1h")
    try:
        started = time.monotonic()
        daemon.start()
        fleets = [f.name for f in repo.fleets]
        wait_for(lambda: all(daemon.fleet(f)["last_good_revision"] == sha for f in fleets), timeout=1200,
                 interval=0.2, what=f"the daemon applying {n} VirtualServices")  # fmt: skip
        ready_s = time.monotonic() - started
        time.sleep(1.0)
        assert daemon.process is not None
        memory = rss_kib(daemon.process.pid)
        started = []
        for attempt in range(COMMITS):
            repo, seconds = _push_to_rollout_started(daemon, remote, repo, attempt)
            started.append(seconds)
    finally:
        daemon.stop()
    return {
        "virtual_services": n,
        "start_to_applied_s": sig(ready_s),
        "rss_mib": sig(memory["rss_kib"] / 1024),
        "peak_rss_mib": sig(memory["hwm_kib"] / 1024),
        "push_to_rollout_started_s": summary(started),
    }


def _push_to_rollout_started(
    daemon: DaemonProcess, remote: GitRemote, repo: SyntheticRepo, nth: int
) -> tuple[SyntheticRepo, float]:
    """Push a commit that edits one VirtualService, trigger a reconcile through the API, and return the new repo
    and the seconds from the pushed commit to the rollout the daemon started (its own `started_at`)."""
    repo, changed = change_destination(repo, single_gateway_vs(repo, nth).index)
    fleet = repo.gateway(changed.gateways[0]).fleet
    write_tree(remote.work, {changed.path: repo.files()[changed.path]})
    sha = remote.commit_and_push(f"move {changed.name}'s probe route")
    pushed = time.time()
    requests.post(f"{daemon.api}/api/v1/reconcile", timeout=5).raise_for_status()
    record = wait_for(lambda: settled(daemon, sha, fleet), timeout=120, interval=0.05, what=f"rollout of {sha[:12]}")
    return repo, record["rollout"]["started_at"] - pushed
