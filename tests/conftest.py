"""Fixtures that start real things and always stop them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.localrun import EchoServer, EnvoyProcess
from tests.support import DaemonProcess, GitRemote


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    return GitRemote(tmp_path / "git")


@pytest.fixture
def upstreams() -> Iterator[dict[str, EchoServer]]:
    servers = {name: EchoServer(name).start() for name in ("a", "b")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(repo_url: str, **kwargs: object) -> DaemonProcess:
        workdir = tmp_path / "daemon"
        workdir.mkdir(exist_ok=True)
        daemon = DaemonProcess(workdir, repo_url, **kwargs)  # type: ignore[arg-type]
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def start_envoy(tmp_path: Path) -> Iterator[Callable[..., EnvoyProcess]]:
    started: list[EnvoyProcess] = []

    def start(fleet: str, node_id: str, xds_port: int, address: str = "127.0.0.1", **options: Any) -> EnvoyProcess:
        envoy = EnvoyProcess(tmp_path / "envoys", fleet, node_id, xds_port, address=address, **options)
        started.append(envoy)
        return envoy.start()

    yield start
    for envoy in started:
        envoy.stop()
