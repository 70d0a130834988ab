"""The daemon's memory at each N: a real `reconciler run` on a bare git repo of N VirtualServices, read from
/proc once it has built and applied every fleet (no Envoys connected: this is the config's own cost)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import rss_kib, sig, write_tree
from bench.synthetic import RepoShape, generate
from tests.support import DaemonProcess, GitRemote, wait_for


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
    finally:
        daemon.stop()
    return {
        "virtual_services": n,
        "start_to_applied_s": sig(ready_s),
        "rss_mib": sig(memory["rss_kib"] / 1024),
        "peak_rss_mib": sig(memory["hwm_kib"] / 1024),
    }
