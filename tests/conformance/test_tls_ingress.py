"""Secure ingress through a real Envoy (istio.io "Secure Gateways"): SIMPLE and MUTUAL TLS with certificate
files, several HTTPS hosts on one port told apart by SNI, TLS versions and ciphers, and httpsRedirect."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
from pathlib import Path

import pytest
import requests

from reconciler.cli.localrun import EchoServer, free_port
from tests.conformance.certs import CertificateAuthority, KeyPair
from tests.conformance.gateway_manifests import documents, file_tls, gateway_manifest, server, service, virtual_service
from tests.conformance.harness import XdsHarness
from tests.conformance.l4_upstreams import https_get, tls_client

HOST = "httpbin.example.com"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"), "example-ca")


def httpbin(backends: dict[str, EchoServer]) -> str:
    return service("httpbin.internal", {name: s.port for name, s in backends.items()}, protocol="HTTP")


def route_to(subset: str, host: str = HOST, name: str = "httpbin") -> str:
    body = f"  http:\n  - route: [{{destination: {{host: httpbin.internal, subset: {subset}}}}}]"
    return virtual_service(name, f"[{host}]", body)


def tls_server(
    port: int, pair: KeyPair, mode: str = "SIMPLE", hosts: str = f"[{HOST}]", extra: str = "", name: str = "https"
) -> str:
    return server(port, "HTTPS", hosts, file_tls(pair, mode, extra), name)


def test_simple_tls_with_certificate_files(
    gateway: XdsHarness, backends: dict[str, EchoServer], ca: CertificateAuthority
) -> None:
    """istio.io "configure a TLS ingress gateway for a single host": HTTPS answered with the server's certificate."""
    server_pair = ca.issue(HOST)
    port = free_port()
    gateway.apply(documents(gateway_manifest(tls_server(port, server_pair)), httpbin(backends), route_to("v1")))
    reply = https_get(port, HOST, tls_client(ca.certificate), "/status/418")
    assert reply.status == 200
    assert reply.headers["x-upstream"] == "v1"
    assert reply.peer_certificate == server_pair.der
    assert json.loads(reply.body)["headers"]["x-forwarded-proto"] == "https"
    with pytest.raises(requests.ConnectionError):  # plain text on a TLS port gets no HTTP answer
        requests.get(f"http://127.0.0.1:{port}/", headers={"Host": HOST}, timeout=5)


def test_several_hosts_on_one_port_are_told_apart_by_sni(
    gateway: XdsHarness, backends: dict[str, EchoServer], ca: CertificateAuthority
) -> None:
    """istio.io "configure a TLS ingress gateway for multiple hosts": each SNI gets its own certificate and routes."""
    one, two = ca.issue("one.example.com"), ca.issue("two.example.com")
    port = free_port()
    gateway.apply(
        documents(
            gateway_manifest(
                tls_server(port, one, hosts="[one.example.com]", name="https-one"),
                tls_server(port, two, hosts="[two.example.com]", name="https-two"),
            ),
            httpbin(backends),
            route_to("v1", "one.example.com", "one"),
            route_to("v2", "two.example.com", "two"),
        )
    )
    client = tls_client(ca.certificate)
    first, second = https_get(port, "one.example.com", client), https_get(port, "two.example.com", client)
    assert (first.headers["x-upstream"], first.peer_certificate) == ("v1", one.der)
    assert (second.headers["x-upstream"], second.peer_certificate) == ("v2", two.der)
    # Each server's route config has only its own hosts: SNI one with Host two finds no virtual host.
    assert https_get(port, "one.example.com", client, host="two.example.com").status == 404
    with pytest.raises((ssl.SSLError, ConnectionError)):  # no chain for an unknown SNI: the handshake fails
        https_get(port, "three.example.com", ssl.create_default_context(cafile=str(ca.certificate)))


def test_mutual_tls_requires_a_client_certificate_from_the_ca(
    gateway: XdsHarness, backends: dict[str, EchoServer], ca: CertificateAuthority, tmp_path: Path
) -> None:
    """istio.io "configure a mutual TLS ingress gateway": no or a foreign client certificate is refused."""
    server_pair, client_pair = ca.issue(HOST), ca.issue("client.example.com", client=True)
    foreign = CertificateAuthority(tmp_path / "foreign", "foreign-ca").issue("client.example.com", client=True)
    port = free_port()
    extra = f", caCertificates: {ca.certificate}"
    gateway.apply(
        documents(
            gateway_manifest(tls_server(port, server_pair, "MUTUAL", extra=extra)), httpbin(backends), route_to("v1")
        )
    )
    reply = https_get(port, HOST, tls_client(ca.certificate, client_pair))
    assert reply.status == 200
    # SANITIZE_SET: the upstream learns which client certificate Envoy verified.
    xfcc = json.loads(reply.body)["headers"]["x-forwarded-client-cert"]
    assert f"Hash={hashlib.sha256(client_pair.der).hexdigest()}" in xfcc
    assert "DNS=client.example.com" in xfcc
    for client in (tls_client(ca.certificate), tls_client(ca.certificate, foreign)):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(port, HOST, client)


def test_mutual_tls_subject_alt_names_pick_the_allowed_clients(
    gateway: XdsHarness, backends: dict[str, EchoServer], ca: CertificateAuthority
) -> None:
    server_pair = ca.issue(HOST)
    allowed = ca.issue("allowed", dns=("allowed.client.test",), client=True)
    other = ca.issue("other", dns=("other.client.test",), client=True)
    spiffe = ca.issue("workload", uris=("spiffe://cluster.local/ns/shop/sa/frontend",), client=True)
    port = free_port()
    sans = "[allowed.client.test, 'spiffe://cluster.local/ns/shop/sa/frontend']"
    extra = f", caCertificates: {ca.certificate}, subjectAltNames: {sans}"
    gateway.apply(
        documents(
            gateway_manifest(tls_server(port, server_pair, "MUTUAL", extra=extra)), httpbin(backends), route_to("v1")
        )
    )
    assert https_get(port, HOST, tls_client(ca.certificate, allowed)).status == 200
    assert https_get(port, HOST, tls_client(ca.certificate, spiffe)).status == 200  # a URI SAN matches as a URI
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, HOST, tls_client(ca.certificate, other))


def test_optional_mutual_tls_verifies_a_certificate_only_when_one_is_presented(
    gateway: XdsHarness, backends: dict[str, EchoServer], ca: CertificateAuthority, tmp_path: Path
) -> None:
    server_pair, client_pair = ca.issue(HOST), ca.issue("client.example.com", client=True)
    foreign = CertificateAuthority(tmp_path / "foreign", "foreign-ca").issue("client.example.com", client=True)
    port = free_port()
    extra = f", caCertificates: {ca.certificate}"
    gateway.apply(
        documents(
            gateway_manifest(tls_server(port, server_pair, "OPTIONAL_MUTUAL", extra=extra)),
            httpbin(backends),
            route_to("v1"),
        )
    )
    anonymous = https_get(port, HOST, tls_client(ca.certificate))
    assert anonymous.status == 200
    assert "x-forwarded-client-cert" not in json.loads(anonymous.body)["headers"]
    verified = https_get(port, HOST, tls_client(ca.certificate, client_pair))
    assert "DNS=client.example.com" in json.loads(verified.body)["headers"]["x-forwarded-client-cert"]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, HOST, tls_client(ca.certificate, foreign))


def test_protocol_versions_and_cipher_suites_bound_the_handshake(
    gateway: XdsHarness, backends: dict[str, EchoServer], ca: CertificateAuthority
) -> None:
    server_pair = ca.issue(HOST)
    port = free_port()
    extra = ", minProtocolVersion: TLSV1_2, maxProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]"
    gateway.apply(
        documents(gateway_manifest(tls_server(port, server_pair, extra=extra)), httpbin(backends), route_to("v1"))
    )
    client = tls_client(ca.certificate)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=HOST) as sock,
    ):
        assert sock.version() == "TLSv1.2"
        cipher = sock.cipher()
        assert cipher is not None and cipher[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    tls13_only = tls_client(ca.certificate)
    tls13_only.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, HOST, tls13_only)


def test_https_redirect_answers_plain_text_with_301(
    gateway: XdsHarness, backends: dict[str, EchoServer], ca: CertificateAuthority
) -> None:
    """istio.io: `tls.httpsRedirect` on the HTTP server sends clients to HTTPS, routed or not."""
    http_port, https_port = free_port(), free_port()
    redirect = server(http_port, "HTTP", f"[{HOST}, bare.example.com]", "{httpsRedirect: true}")
    gateway.apply(
        documents(
            gateway_manifest(redirect, tls_server(https_port, ca.issue(HOST))),
            httpbin(backends),
            route_to("v1"),
        )
    )
    for host in (HOST, "bare.example.com"):  # bare.example.com has no VirtualService: a route-less redirect vhost
        response = requests.get(
            f"http://127.0.0.1:{http_port}/status?x=1", headers={"Host": host}, allow_redirects=False, timeout=5
        )
        assert response.status_code == 301
        assert response.headers["location"] == f"https://{host}/status?x=1"
    assert https_get(https_port, HOST, tls_client(ca.certificate)).status == 200


def test_insecure_skip_verify_lets_an_untrusted_client_certificate_through(
    gateway: XdsHarness, backends: dict[str, EchoServer], ca: CertificateAuthority, tmp_path: Path
) -> None:
    """`insecureSkipVerify` (Gateway API's AllowInsecureFallback): a certificate is still required, not trusted."""
    foreign = CertificateAuthority(tmp_path / "foreign", "foreign-ca").issue("client.example.com", client=True)
    port = free_port()
    extra = f", caCertificates: {ca.certificate}, insecureSkipVerify: true"
    gateway.apply(
        documents(
            gateway_manifest(tls_server(port, ca.issue(HOST), "MUTUAL", extra=extra)), httpbin(backends), route_to("v1")
        )
    )
    assert https_get(port, HOST, tls_client(ca.certificate, foreign)).status == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, HOST, tls_client(ca.certificate))
