"""`reconciler demo`: the newcomer's path, everything real and local.

A config repo made from `repo-template/` (a bare "remote" plus a working clone to edit), the daemon, two
sample upstreams (blue and green) and one real Envoy. It prints what to curl and what to commit, and stops
everything on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reconciler.cli.localrun import LOOPBACK, EchoServer, EnvoyProcess
from reconciler.daemon.app import Daemon
from reconciler.daemon.config import (
    ApiSettings,
    DaemonConfig,
    EnvoySettings,
    LogSettings,
    RepoSettings,
    StateSettings,
    XdsSettings,
)
from reconciler.logging import configure_logging
from reconciler.manifests.durations import Duration

TEMPLATE = Path(__file__).resolve().parents[2] / "repo-template"
FLEET = "public-ingress"
DEMO_HOST = "shop.example.com"


@dataclass(frozen=True)
class DemoPorts:
    gateway: int
    xds: int
    api: int
    admin: int
    blue: int
    green: int


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def prepare_repo(workdir: Path, ports: DemoPorts) -> tuple[Path, Path]:
    """Copy the template into a working clone of a fresh bare repo; retarget its ports; push it."""
    if not TEMPLATE.is_dir():
        raise FileNotFoundError(f"the repo template is missing at {TEMPLATE}; run the demo from a source checkout")
    bare, work = workdir / "gateway-config.git", workdir / "gateway-config"
    for path in (bare, work):
        if path.exists():
            shutil.rmtree(path)
    _git(workdir, "init", "-q", "--bare", "--initial-branch", "main", str(bare))
    shutil.copytree(TEMPLATE, work)
    replacements = {
        "number: 8080": f"number: {ports.gateway}",
        "port: 8080": f"port: {ports.gateway}",
        "http: 9101": f"http: {ports.blue}",
        "http: 9102": f"http: {ports.green}",
    }
    for path in work.rglob("*.yaml"):
        text = path.read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        path.write_text(text)
    _git(work, "init", "-q", "--initial-branch", "main")
    _git(work, "config", "user.name", "Demo User")
    _git(work, "config", "user.email", "demo@example.test")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "Gateway config from the template")
    _git(work, "remote", "add", "origin", str(bare))
    _git(work, "push", "-q", "-u", "origin", "main")
    return bare, work


def instructions(work: Path, ports: DemoPorts) -> str:
    return f"""
Gateway Reconciler demo is running: one Envoy in fleet {FLEET!r}, upstreams blue and green.

  Send a request through the gateway (answered by "blue"):
    curl -s -H 'Host: {DEMO_HOST}' http://{LOOPBACK}:{ports.gateway}/ ; echo

  Route it to green by commit-and-push:
    cd {work}
    sed -i 's/subset: blue/subset: green/' routes/shop.yaml
    git commit -qam 'Route shop to green' && git push -q

  Watch the fleet pick it up:
    reconciler status --api http://{LOOPBACK}:{ports.api}

  Roll it back:
    git revert --no-edit HEAD && git push -q

  Envoy admin: http://{LOOPBACK}:{ports.admin}/   Ctrl-C stops everything.
"""


def run_demo(workdir: Path | None, ports: DemoPorts) -> int:
    base = workdir or Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    bare, work = prepare_repo(base, ports)
    configure_logging("console", "info")
    config = DaemonConfig(
        repo=RepoSettings(url=f"file://{bare}", branch="main", path=".", poll_interval=Duration.parse("2s")),
        xds=XdsSettings(f"{LOOPBACK}:{ports.xds}"),
        api=ApiSettings(f"{LOOPBACK}:{ports.api}"),
        state=StateSettings(str(base / "state")),
        envoy=EnvoySettings(bind_address=LOOPBACK),
        log=LogSettings("console", "info"),
    )
    upstreams = [EchoServer("blue", ports.blue).start(), EchoServer("green", ports.green).start()]
    envoy = EnvoyProcess(base, FLEET, "demo-gateway-1", ports.xds, ports.admin)
    daemon = Daemon(config)
    try:
        asyncio.run(_run(daemon, envoy, work, ports))
    finally:
        envoy.stop()
        for upstream in upstreams:
            upstream.stop()
    return 0


async def _run(daemon: Daemon, envoy: EnvoyProcess, work: Path, ports: DemoPorts) -> None:
    serving = asyncio.create_task(daemon.run())
    while "api" not in daemon.ports and not serving.done():
        await asyncio.sleep(0.05)
    if not serving.done():
        await asyncio.to_thread(envoy.start)
        print(instructions(work, ports), flush=True)
    await serving
