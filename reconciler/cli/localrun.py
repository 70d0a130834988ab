"""Local processes for the demo and the tests: a real Envoy, and echo upstreams that say who answered.

Everything binds 127.0.0.1 only. Envoy runs in its own process group so stopping it stops everything it
started; echo upstreams are threads of the calling process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from reconciler.cli.bootstrap import bootstrap_yaml, envoy_bootstrap
from reconciler.envoy_binary import envoy_binary

LOOPBACK = "127.0.0.1"


# Ports this process was handed: a released port is offered again by the kernel (157 repeats in 2,000 calls),
# and two that are bound later (a gateway listener and an Envoy's admin API) must not be the same one.
_HANDED_OUT: set[int] = set()
_HANDING_OUT = threading.Lock()


def free_port(address: str = LOOPBACK) -> int:
    """A port nobody listens on right now (bound without SO_REUSEPORT, then released), never one this process
    was handed before."""
    return free_ports(1, address)[0]


def free_ports(count: int, address: str = LOOPBACK) -> list[int]:
    """`count` different free ports, none handed to this process before: all are held at once while chosen."""
    with _HANDING_OUT, ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((address, 0))
            port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                ports.append(port)
                _HANDED_OUT.add(port)
        return ports


class EnvoyProcess:
    """One real Envoy fleet member, configured by `reconciler bootstrap`'s output."""

    def __init__(
        self, workdir: Path, fleet: str, node_id: str, xds_port: int, admin_port: int | None = None,
        address: str = LOOPBACK, xds_protocol: str = "sotw", transport_socket: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """`address` (a loopback address) is this node's own: its admin API and its gateway listeners bind it,
        so several nodes of one fleet can run on this host and be told apart."""
        self.fleet, self.node_id, self.address = fleet, node_id, address
        self.admin_port = admin_port or free_port(address)
        self.workdir = workdir / f"envoy-{node_id}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "bootstrap.yaml"
        self.log_path = self.workdir / "envoy.log"
        bootstrap = envoy_bootstrap(
            fleet, node_id, f"{LOOPBACK}:{xds_port}", self.admin_port, address,
            listen_address="" if address == LOOPBACK else address, xds_protocol=xds_protocol,
            transport_socket=transport_socket,
        )  # fmt: skip
        self.config_path.write_text(bootstrap_yaml(bootstrap))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"http://{self.address}:{self.admin_port}"

    def start(self) -> EnvoyProcess:
        command = [
            envoy_binary(),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
            "--log-path",
            str(self.log_path),
        ]
        self.process = subprocess.Popen(
            command,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.process.returncode}; see {self.log_path}")
            try:
                requests.get(f"{self.admin_url}/ready", timeout=0.5)
                return self
            except requests.RequestException:
                time.sleep(0.05)
        raise TimeoutError(f"envoy admin did not answer on {self.admin_url}; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_process_group(self.process)

    def stats(self, filter_regex: str = "") -> dict[str, int]:
        response = requests.get(f"{self.admin_url}/stats", params={"filter": filter_regex, "format": "json"}, timeout=5)
        return {s["name"]: s.get("value", 0) for s in response.json()["stats"] if "value" in s}


def stop_process_group(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


class _EchoHandler(BaseHTTPRequestHandler):
    server: EchoServer

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = {
            "upstream": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        self.server.record(payload)
        data = json.dumps(payload).encode()
        self.send_response(self.server.status)
        self.send_header("content-type", "application/json")
        self.send_header("x-upstream", self.server.name)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


class EchoServer(ThreadingHTTPServer):
    """An HTTP upstream on 127.0.0.1 that answers with JSON naming itself and echoing the request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, port: int = 0, status: int = 200) -> None:
        super().__init__((LOOPBACK, port), _EchoHandler)
        self.name, self.status = name, status
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name=f"echo-{name}", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def record(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(payload)

    def start(self) -> EchoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
