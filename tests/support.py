"""Test harness: real git remotes, a real daemon process, waiting helpers. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

from reconciler.cli.localrun import LOOPBACK, free_port, stop_process_group

T = TypeVar("T")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def wait_for(check: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> T:
    """Poll `check` until it returns a truthy value; fail with `what` and the last error otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last error: {last}")


class GitRemote:
    """A bare repository (the remote) and a working clone that commits and pushes to it."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.branch = branch
        self.signing: list[str] = []  # git -c options that sign commits (e.g. gpg.format=ssh + user.signingkey)
        root.mkdir(parents=True, exist_ok=True)
        self._git(root, "init", "--bare", "--initial-branch", branch, str(self.bare))
        self._git(root, "clone", str(self.bare), str(self.work))
        self._git(self.work, "checkout", "-B", branch)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def _git(self, cwd: Path, *args: str) -> str:
        env = {**os.environ, **GIT_ENV, "HOME": str(cwd)}
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout.strip()

    def git(self, *args: str) -> str:
        return self._git(self.work, *args)

    def write(self, path: str, content: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(content))

    def remove(self, path: str) -> None:
        (self.work / path).unlink()

    def commit_and_push(self, message: str) -> str:
        self.git("add", "-A")
        self.git(*self.signing, "commit", "-q", *(["-S"] if self.signing else []), "-m", message)
        self.git("push", "-q", "origin", self.branch)
        return self.git("rev-parse", "HEAD")

    def revert_head_and_push(self) -> str:
        self.git("revert", "--no-edit", "HEAD")
        self.git("push", "-q", "origin", self.branch)
        return self.git("rev-parse", "HEAD")


class DaemonProcess:
    """`reconciler run` as a real subprocess in its own process group."""

    def __init__(
        self, workdir: Path, repo_url: str, poll: str = "300ms", xds_port: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """`extra` adds config sections (merged one level deep), e.g. {"webhook": {...}, "api": {"auth": ...}}."""
        self.workdir = workdir
        self.xds_port = xds_port or free_port()
        self.api_port = free_port()
        self.config_path = workdir / "reconciler.yaml"
        self.log_path = workdir / "daemon.log"
        config = {
            "repo": {"url": repo_url, "branch": "main", "path": ".", "poll_interval": poll},
            "xds": {"listen": f"{LOOPBACK}:{self.xds_port}"},
            "api": {"listen": f"{LOOPBACK}:{self.api_port}"},
            "state": {"dir": "state"},
            "envoy": {"bind_address": LOOPBACK},
            "log": {"format": "json", "level": "info"},
        }
        for section, values in (extra or {}).items():
            config[section] = {**config.get(section, {}), **values}
        self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}  # e.g. an Authorization header when the API requires a token

    @property
    def api(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    def start(self) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "run", "--config", str(self.config_path)],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        wait_for(lambda: self._healthy(), timeout=20, what=f"daemon API on {self.api}")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
        return requests.get(f"{self.api}/healthz", timeout=1).status_code == 200

    def status(self) -> dict[str, Any]:
        response = requests.get(f"{self.api}/api/v1/status", headers=self.headers, timeout=5)
        response.raise_for_status()
        payload: dict[str, Any] = response.json()
        return payload

    def fleet(self, name: str) -> dict[str, Any]:
        fleets = {f["name"]: f for f in self.status()["fleets"]}
        return fleets[name]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process)

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)


class InProcessDaemon:
    """The daemon on a thread of the test process, for the few tests that must reach inside it (e.g. to
    let a config Envoy rejects slip past validation, a fault that cannot be produced for real)."""

    def __init__(self, workdir: Path, repo_url: str, poll: str = "300ms", extra: dict[str, Any] | None = None) -> None:
        from reconciler.daemon.app import Daemon
        from reconciler.daemon.config import load_config

        process = DaemonProcess(workdir, repo_url, poll, extra=extra)  # reuses its config file and ports
        self.xds_port, self.api_port = process.xds_port, process.api_port
        self.api = process.api
        self.daemon = Daemon(load_config(process.config_path))
        self._thread = threading.Thread(target=lambda: asyncio.run(self.daemon.run()), daemon=True)

    def start(self) -> InProcessDaemon:
        self._thread.start()
        wait_for(lambda: "api" in self.daemon.ports, what="in-process daemon API")
        return self

    def status(self) -> dict[str, Any]:
        payload: dict[str, Any] = requests.get(f"{self.api}/api/v1/status", timeout=5).json()
        return payload

    def fleet(self, name: str) -> dict[str, Any]:
        return {f["name"]: f for f in self.status()["fleets"]}[name]

    def stop(self) -> None:
        self.daemon.stop()
        self._thread.join(timeout=20)
