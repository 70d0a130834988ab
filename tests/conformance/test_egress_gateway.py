"""An egress gateway through a real Envoy (docs/egress-gateway.md): the fleet reaches only the external hosts its
ServiceEntries declare, originates TLS to them, and refuses everything else; never an open proxy."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from reconciler.cli.localrun import EchoServer, free_port
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import documents, get
from tests.conformance.upstream_support import Certificates, TlsEchoServer

ALLOWED = "api.partner.example"
SECURE = "secure.partner.example"
DENY_BODY = "egress to this host is not allowed"


@dataclass(frozen=True)
class Exits:
    plain: EchoServer
    tls: TlsEchoServer
    ca: str


@pytest.fixture(scope="module")
def exits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exits]:
    certificates = Certificates(tmp_path_factory.mktemp("egress-pki"))
    cert, key = certificates.issue("partner", [SECURE])
    servers = Exits(
        EchoServer("partner").start(), TlsEchoServer("partner-tls", cert, key).start(), str(certificates.ca)
    )
    yield servers
    servers.plain.stop()
    servers.tls.stop()


def egress(port: int, exits: Exits, deny_all: bool = True) -> str:
    """The recipe of docs/egress-gateway.md, with `localhost` standing in for the partner's DNS name."""
    deny = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: deny-undeclared}}
spec:
  hosts: ["*"]
  gateways: [egress]
  http:
  - directResponse: {{status: 403, body: {{string: "{DENY_BODY}"}}}}
"""
    return documents(
        f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: egress}}
spec:
  selector: {{app: conformance-gateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: partner}}
spec:
  hosts: [{ALLOWED}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: DNS
  endpoints: [{{address: localhost, ports: {{http: {exits.plain.port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: partner-secure}}
spec:
  hosts: [{SECURE}]
  ports: [{{number: 443, name: https, protocol: HTTP}}]
  resolution: DNS
  endpoints: [{{address: localhost, ports: {{https: {exits.tls.port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: partner-secure}}
spec:
  host: {SECURE}
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: {exits.ca}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: partner}}
spec:
  hosts: [{ALLOWED}]
  gateways: [egress]
  http:
  - route: [{{destination: {{host: {ALLOWED}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: partner-secure}}
spec:
  hosts: [{SECURE}]
  gateways: [egress]
  http:
  - route: [{{destination: {{host: {SECURE}}}}}]
""",
        deny if deny_all else "",
    )


def test_declared_host_is_reached(gateway: XdsHarness, exits: Exits) -> None:
    port = free_port()
    gateway.apply(egress(port, exits))
    response = get(port, "/v1/quote", host=ALLOWED)
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "partner"
    assert response.json()["headers"]["host"] == ALLOWED  # the partner sees its own name


def test_tls_is_originated_to_the_declared_host(gateway: XdsHarness, exits: Exits) -> None:
    port = free_port()
    gateway.apply(egress(port, exits))
    # Plain HTTP in, verified TLS out: SNI and the certificate check use the requested host.
    response = get(port, "/v1/quote", host=SECURE)
    assert (response.status_code, response.headers.get("x-upstream")) == (200, "partner-tls")


@pytest.mark.parametrize("host", ["attacker.example", "169.254.169.254", f"{ALLOWED}.attacker.example"])
def test_undeclared_host_is_refused(gateway: XdsHarness, exits: Exits, host: str) -> None:
    port = free_port()
    gateway.apply(egress(port, exits))
    seen = len(exits.plain.requests)
    response = get(port, "/", host=host)
    assert (response.status_code, response.text) == (403, DENY_BODY)
    assert len(exits.plain.requests) == seen


def test_without_the_deny_rule_undeclared_hosts_get_404(gateway: XdsHarness, exits: Exits) -> None:
    port = free_port()
    gateway.apply(egress(port, exits, deny_all=False))
    assert get(port, "/", host="attacker.example").status_code == 404
    assert get(port, "/", host=ALLOWED).status_code == 200


def test_proxy_style_requests_are_not_forwarded(gateway: XdsHarness, exits: Exits) -> None:
    port = free_port()
    gateway.apply(egress(port, exits))
    proxies = {"http": f"http://127.0.0.1:{port}"}
    # An absolute URI is routed by its authority like any request: undeclared means refused.
    absolute = requests.get("http://attacker.example/", proxies=proxies, timeout=5)
    assert absolute.status_code == 403
    # CONNECT would open a tunnel to anywhere; no route matches it, even for a declared host.
    for target in ("attacker.example:443", f"{ALLOWED}:80"):
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
        assert raw_request(port, request).split(b" ")[1] == b"404", target


def raw_request(port: int, request: bytes) -> bytes:
    """Send raw bytes to the gateway and return the status line and headers it answers with."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_documented_recipe_is_the_golden_case() -> None:
    """docs/egress-gateway.md shows exactly the manifests whose rendering tests/golden reviews."""
    root = Path(__file__).parents[2]
    block = re.search(r"```yaml\n(.*?)```", (root / "docs" / "egress-gateway.md").read_text(), re.S)
    assert block is not None
    golden = (root / "tests" / "golden" / "cases" / "egress-gateway" / "manifests.yaml").read_text()
    assert list(yaml.safe_load_all(block.group(1))) == list(yaml.safe_load_all(golden))
