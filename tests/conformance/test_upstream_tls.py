"""DestinationRule `tls` to real TLS upstreams: SIMPLE (CA, SNI, SAN checks, auto SNI/SAN from the request's
host, insecureSkipVerify) and MUTUAL (client certificate), each shown to fail when it should."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli.localrun import free_port
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import documents, get, http_gateway
from tests.conformance.upstream_support import Certificates, TlsEchoServer, endpoint, static_entry

SERVER_NAME = "secure.upstream.test"
SERVICE = "secure.internal"


@dataclass(frozen=True)
class Pki:
    ca: Path  # issues the servers' and the gateway's certificates
    other_ca: Path  # trusted by nobody here
    client_cert: Path
    client_key: Path
    server_cert: Path  # for SERVER_NAME
    server_key: Path


@dataclass(frozen=True)
class Upstreams:
    tls: TlsEchoServer
    mtls: TlsEchoServer  # demands a client certificate issued by Pki.ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    certificates = Certificates(folder)
    client_cert, client_key = certificates.issue("gateway-client", ["gateway.conformance.test"], client=True)
    server_cert, server_key = certificates.issue("server", [SERVER_NAME])
    other_ca = Certificates(folder, "other-ca").ca
    return Pki(certificates.ca, other_ca, client_cert, client_key, server_cert, server_key)


@pytest.fixture(scope="module")
def upstreams(pki: Pki) -> Iterator[Upstreams]:
    servers = Upstreams(
        TlsEchoServer("tls", pki.server_cert, pki.server_key).start(),
        TlsEchoServer("mtls", pki.server_cert, pki.server_key, client_ca=pki.ca).start(),
    )
    yield servers
    servers.tls.stop()
    servers.mtls.stop()


def through(gateway: XdsHarness, server: TlsEchoServer, tls: str, host: str = SERVER_NAME) -> int:
    """Route `host` (and anything else) to `server` with DestinationRule `tls`; the status of one request."""
    port = free_port()
    gateway.apply(
        documents(
            http_gateway(port),
            static_entry(SERVICE, [endpoint(server)]),
            f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: secure}}
spec:
  host: {SERVICE}
  trafficPolicy:
    tls: {tls}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secure}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: {SERVICE}}}}}]
    retries: {{attempts: 0}}
""",
        )
    )
    response = get(port, host=host)
    if response.status_code == 200:
        assert response.headers["x-upstream"] == server.name
    return response.status_code


def test_simple_with_ca_sni_and_san(gateway: XdsHarness, upstreams: Upstreams, pki: Pki) -> None:
    tls = f"{{mode: SIMPLE, caCertificates: {pki.ca}, sni: {SERVER_NAME}, subjectAltNames: [{SERVER_NAME}]}}"
    assert through(gateway, upstreams.tls, tls, host="anything.example.com") == 200


def test_simple_rejects_a_certificate_for_another_name(gateway: XdsHarness, upstreams: Upstreams, pki: Pki) -> None:
    tls = f"{{mode: SIMPLE, caCertificates: {pki.ca}, sni: {SERVER_NAME}, subjectAltNames: [other.test]}}"
    assert through(gateway, upstreams.tls, tls) == 503


def test_simple_rejects_an_untrusted_issuer(gateway: XdsHarness, upstreams: Upstreams, pki: Pki) -> None:
    tls = f"{{mode: SIMPLE, caCertificates: {pki.other_ca}, sni: {SERVER_NAME}}}"
    assert through(gateway, upstreams.tls, tls) == 503


def test_insecure_skip_verify_accepts_any_issuer(gateway: XdsHarness, upstreams: Upstreams) -> None:
    assert through(gateway, upstreams.tls, "{mode: SIMPLE, insecureSkipVerify: true}") == 200


@pytest.mark.parametrize(("host", "status"), [(SERVER_NAME, 200), ("impostor.upstream.test", 503)])
def test_sni_and_san_check_follow_the_request_host(
    gateway: XdsHarness, upstreams: Upstreams, pki: Pki, host: str, status: int
) -> None:
    # No sni and no subjectAltNames: like istiod, SNI and the SAN check come from the request's host.
    assert through(gateway, upstreams.tls, f"{{mode: SIMPLE, caCertificates: {pki.ca}}}", host=host) == status


def test_mutual_presents_the_client_certificate(gateway: XdsHarness, upstreams: Upstreams, pki: Pki) -> None:
    tls = (
        f"{{mode: MUTUAL, clientCertificate: {pki.client_cert}, privateKey: {pki.client_key}, "
        f"caCertificates: {pki.ca}, sni: {SERVER_NAME}}}"
    )
    assert through(gateway, upstreams.mtls, tls) == 200


def test_simple_fails_where_the_upstream_demands_a_client_certificate(
    gateway: XdsHarness, upstreams: Upstreams, pki: Pki
) -> None:
    tls = f"{{mode: SIMPLE, caCertificates: {pki.ca}, sni: {SERVER_NAME}}}"
    assert through(gateway, upstreams.mtls, tls) == 503
