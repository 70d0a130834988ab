"""Test upstreams and manifest snippets for the HTTP conformance modules.

`ScriptedUpstream` is an echo upstream (same JSON answer as `EchoServer`) whose behaviour a request can
script with headers, so one server proves retries, timeouts and faults:
- `x-sleep-ms: N` sleeps N ms before answering (with `x-slow-first: M`, only the first M attempts);
- `x-status: S` answers with status S;
- `x-fail-first: N` answers 503 to the first N attempts, then 200.
Attempts are counted per `x-request-key` (give each case its own key).
Everything binds 127.0.0.1; servers are threads stopped by the fixtures that start them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests

from reconciler.cli.localrun import EchoServer, free_port
from reconciler.diagnostics import Finding
from reconciler.pipeline import build
from tests.conformance import gateway_manifests
from tests.conformance.gateway_manifests import documents, virtual_service
from tests.conformance.harness import FLEET_MANIFEST, XdsHarness
from tests.support import wait_for

GATEWAY_LABELS = "{app: conformance-gateway}"


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedUpstream

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        # A header sent on several lines (e.g. after an `add`) is seen once, its values joined as HTTP allows.
        headers = {k.lower(): ",".join(self.headers.get_all(k) or []) for k in self.headers}
        payload = {
            "upstream": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
        }
        status = self.server.script(headers)
        self.server.record(payload)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("x-upstream", self.server.name)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # Envoy gave up on this attempt (timeouts are what some cases test)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


class ScriptedUpstream(EchoServer):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.RequestHandlerClass = _ScriptedHandler  # EchoServer's recording and lifecycle, our handler
        self._attempts: Counter[str] = Counter()
        self._attempts_lock = threading.Lock()

    def script(self, headers: dict[str, str]) -> int:
        """Apply the request's script (sleep, status, fail-first) and return the status to answer with."""
        key = headers.get("x-request-key", "")
        with self._attempts_lock:
            self._attempts[key] += 1
            attempt = self._attempts[key]
        slow_first = int(headers.get("x-slow-first", "0"))
        if not slow_first or attempt <= slow_first:
            time.sleep(int(headers.get("x-sleep-ms", "0")) / 1000)
        if attempt <= int(headers.get("x-fail-first", "0")):
            return 503
        return int(headers.get("x-status", "200"))

    def attempts(self, key: str) -> int:
        with self._attempts_lock:
            return self._attempts[key]

    def received(self, **headers: str) -> list[dict[str, Any]]:
        """The requests recorded so far whose headers contain all of `headers`."""
        with self._lock:
            return [r for r in self.requests if all(r["headers"].get(k) == v for k, v in headers.items())]


def http_gateway(port: int, name: str = "gw", hosts: str = '["*"]') -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {GATEWAY_LABELS}
  servers:
  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}
    hosts: {hosts}
"""


def service(host: str, upstreams: Mapping[str, EchoServer], port: int = 80) -> str:
    """A STATIC ServiceEntry `host` whose endpoints are `upstreams` (labelled version=<key>), with one
    DestinationRule subset per upstream."""
    return gateway_manifests.service(
        host, {name: s.port for name, s in upstreams.items()}, port, protocol="HTTP", port_name="http"
    )


def http_routes(name: str, hosts: str, rules: str, gateways: str = "[gw]") -> str:
    """A VirtualService `name` whose `http` section is `rules` (YAML list items, indented two spaces)."""
    return virtual_service(name, hosts, f"  http:\n{rules}", gateways)


def serve_http(harness: XdsHarness, backend: str, upstreams: Mapping[str, EchoServer], *manifests: str) -> int:
    """A fresh HTTP port on Gateway `gw`, `backend` served by `upstreams`, and `manifests`; returns the port."""
    port = free_port()
    apply(harness, documents(http_gateway(port), service(backend, upstreams), *manifests), port)
    return port


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections for the `with` block: bound, never listening. Unlike a port
    free_port() picked, nothing else (a gateway listener picked next, say) can take it meanwhile and answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextmanager
def started(*names: str) -> Iterator[dict[str, ScriptedUpstream]]:
    """Scripted upstreams by name, running for the `with` block (a module fixture's lifetime)."""
    servers = {name: ScriptedUpstream(name).start() for name in names}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def findings_of(manifests: str) -> list[Finding]:
    """What the pipeline reports about a case (the harness only serves cases without errors)."""
    text = documents(FLEET_MANIFEST, manifests)
    return list(build({"case.yaml": text.encode()}).findings)


def codes(findings: Iterable[Finding]) -> list[str]:
    return [f.code for f in findings]


def get(port: int, path: str = "/", host: str = "app.example.com", **headers: str) -> requests.Response:
    """A GET through the gateway; header names use `_` for `-` (x_user → x-user)."""
    sent = {"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return requests.get(f"http://127.0.0.1:{port}{path}", headers=sent, timeout=10, allow_redirects=False)


def active_route_config(harness: XdsHarness, port: int) -> Any:
    """Route configuration `http.<port>` as the real Envoy holds it (admin config_dump, proto JSON names)."""
    assert harness.envoy is not None
    dump = requests.get(f"{harness.envoy.admin_url}/config_dump?resource=dynamic_route_configs", timeout=5).json()
    (config,) = [c["route_config"] for c in dump["configs"] if c["route_config"]["name"] == f"http.{port}"]
    return config


def apply(harness: XdsHarness, manifests: str, *ports: int) -> None:
    """Serve `manifests` and wait until the gateway accepts connections on `ports`.

    Envoy ACKs a new listener before its workers accept on it, so a request sent right after the ACK can
    be refused for a moment.
    """
    harness.apply(manifests)
    for port in ports:
        wait_for(lambda port=port: _accepts(port), timeout=5, interval=0.01, what=f"listener on port {port}")


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
