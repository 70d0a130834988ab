"""`credentialName` through a real Envoy: key material from a secrets folder (never git) served over SDS on the
ADS stream, MUTUAL with the CA in the credential or in a separate `<name>-cacert`, TLS termination for a TCP
upstream, and rotation (new files → new Secret version → Envoy presents the new certificate)."""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli.localrun import EchoServer, free_port
from reconciler.source.credentials import load_credentials
from reconciler.translate.snapshot import SECRET
from tests.conformance.certs import CertificateAuthority, KeyPair
from tests.conformance.gateway_manifests import documents, gateway_manifest, service, virtual_service
from tests.conformance.harness import XdsHarness
from tests.conformance.l4_upstreams import EchoTcpServer, https_get, peer_certificate, tls_client, tls_exchange
from tests.support import wait_for

HOST = "httpbin.example.com"


@pytest.fixture(scope="module")
def backend() -> Iterator[EchoServer]:
    server = EchoServer("httpbin").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"), "example-ca")


def store(secrets: Path, name: str, pair: KeyPair | None = None, ca: Path | None = None) -> None:
    """Write one credential folder the way an operator (or a mounted Kubernetes Secret) would."""
    folder = secrets / name
    folder.mkdir(parents=True, exist_ok=True)
    if pair is not None:
        shutil.copyfile(pair.certificate, folder / "tls.crt")
        shutil.copyfile(pair.private_key, folder / "tls.key")
    if ca is not None:
        shutil.copyfile(ca, folder / "ca.crt")


def https_manifests(
    backend: EchoServer, port: int, mode: str = "SIMPLE", credential: str = "httpbin-credential"
) -> str:
    server = (
        f"{{port: {{number: {port}, name: https, protocol: HTTPS}}, hosts: [{HOST}], "
        f"tls: {{mode: {mode}, credentialName: {credential}}}}}"
    )
    body = "  http:\n  - route: [{destination: {host: httpbin.internal}}]"
    return documents(
        gateway_manifest(server),
        service("httpbin.internal", {"v1": backend.port}, protocol="HTTP"),
        virtual_service("httpbin", f"[{HOST}]", body),
    )


def test_credential_name_is_served_over_sds(
    gateway: XdsHarness, backend: EchoServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    """istio.io secure ingress with `credentialName`: the certificate reaches Envoy as an SDS Secret."""
    pair = ca.issue(HOST)
    store(tmp_path, "httpbin-credential", pair)
    port = free_port()
    snapshot = gateway.apply(https_manifests(backend, port), credentials=load_credentials(tmp_path).credentials)
    assert list(snapshot.of_type(SECRET)) == ["kubernetes://httpbin-credential"]
    reply = https_get(port, HOST, tls_client(ca.certificate))
    assert (reply.status, reply.headers["x-upstream"], reply.peer_certificate) == (200, "httpbin", pair.der)


def test_mutual_tls_takes_the_client_ca_from_the_credential(
    gateway: XdsHarness, backend: EchoServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    client_ca = CertificateAuthority(tmp_path / "clients", "client-ca")
    store(tmp_path / "secrets", "httpbin-credential", ca.issue(HOST), client_ca.certificate)
    port = free_port()
    credentials = load_credentials(tmp_path / "secrets").credentials
    snapshot = gateway.apply(https_manifests(backend, port, "MUTUAL"), credentials=credentials)
    assert set(snapshot.of_type(SECRET)) == {
        "kubernetes://httpbin-credential",
        "kubernetes://httpbin-credential-cacert",
    }
    trusted = tls_client(ca.certificate, client_ca.issue("client", client=True))
    assert https_get(port, HOST, trusted).status == 200
    # Signed by the server's CA, not the client CA the credential names: refused, as is no certificate at all.
    for client in (tls_client(ca.certificate, ca.issue("client", client=True)), tls_client(ca.certificate)):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(port, HOST, client)


def test_mutual_tls_takes_the_client_ca_from_a_separate_cacert_credential(
    gateway: XdsHarness, backend: EchoServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    """istio's `<name>-cacert` Secret: the key pair and the client CA kept in two folders."""
    store(tmp_path, "httpbin-credential", ca.issue(HOST))
    store(tmp_path, "httpbin-credential-cacert", ca=ca.certificate)
    port = free_port()
    gateway.apply(https_manifests(backend, port, "MUTUAL"), credentials=load_credentials(tmp_path).credentials)
    assert https_get(port, HOST, tls_client(ca.certificate, ca.issue("client", client=True))).status == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, HOST, tls_client(ca.certificate))


def test_tls_server_terminates_for_a_tcp_upstream(
    gateway: XdsHarness, ca: CertificateAuthority, tmp_path: Path
) -> None:
    """Protocol TLS with SIMPLE: Envoy terminates TLS and proxies the bytes to the VirtualService's `tcp` route."""
    upstream = EchoTcpServer("tcp-echo").start()
    try:
        pair = ca.issue("echo.example.com")
        store(tmp_path, "echo-credential", pair)
        port = free_port()
        server = (
            f"{{port: {{number: {port}, name: tls, protocol: TLS}}, hosts: [echo.example.com], "
            "tls: {mode: SIMPLE, credentialName: echo-credential}}"
        )
        gateway.apply(
            documents(
                gateway_manifest(server),
                service("echo.internal", {"v1": upstream.port}),
                virtual_service(
                    "echo", "[echo.example.com]", "  tcp:\n  - route: [{destination: {host: echo.internal}}]"
                ),
            ),
            credentials=load_credentials(tmp_path).credentials,
        )
        reply = tls_exchange(port, "echo.example.com", tls_client(ca.certificate), "ping")
        assert (reply.line, reply.peer_certificate) == ("tcp-echo ping", pair.der)
    finally:
        upstream.stop()


def test_rotated_files_reach_envoy_as_a_new_secret_version(
    gateway: XdsHarness, backend: EchoServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    """Rotation: replace the files, reload, re-serve; only the Secret changes and Envoy presents the new certificate."""
    old, new = ca.issue(HOST), ca.issue(HOST)
    store(tmp_path, "httpbin-credential", old)
    port = free_port()
    before = load_credentials(tmp_path)
    first = gateway.apply(https_manifests(backend, port), credentials=before.credentials)
    client = tls_client(ca.certificate)
    assert peer_certificate(port, HOST, client) == old.der

    staged = tmp_path / ".staging"  # rotate the way Kubernetes does: write aside, then swap in one rename
    store(staged, "httpbin-credential", new)
    os.replace(staged / "httpbin-credential" / "tls.crt", tmp_path / "httpbin-credential" / "tls.crt")
    os.replace(staged / "httpbin-credential" / "tls.key", tmp_path / "httpbin-credential" / "tls.key")
    after = load_credentials(tmp_path)
    assert after.fingerprint != before.fingerprint
    second = gateway.apply(https_manifests(backend, port), credentials=after.credentials)

    changed = {t for t in second.type_versions if second.type_versions[t] != first.type_versions[t]}
    assert changed == {SECRET}
    # Envoy swaps the certificate in place: new handshakes see the new one, no listener restart needed.
    wait_for(lambda: peer_certificate(port, HOST, client) == new.der, timeout=10, what="the rotated certificate")
    assert https_get(port, HOST, client).status == 200


def test_credential_names_serve_an_rsa_and_an_ecdsa_certificate_side_by_side(
    gateway: XdsHarness, backend: EchoServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    """`credentialNames` (two key types): Envoy picks the certificate the client's cipher suites can use."""
    ecdsa, rsa = ca.issue(HOST), ca.issue(HOST, rsa=True)
    store(tmp_path, "httpbin-ecdsa", ecdsa)
    store(tmp_path, "httpbin-rsa", rsa)
    port = free_port()
    manifests = https_manifests(backend, port).replace(
        "credentialName: httpbin-credential", "credentialNames: [httpbin-rsa, httpbin-ecdsa]"
    )
    gateway.apply(manifests, credentials=load_credentials(tmp_path).credentials)
    for suite, expected in (("ECDHE-ECDSA-AES128-GCM-SHA256", ecdsa), ("ECDHE-RSA-AES128-GCM-SHA256", rsa)):
        client = tls_client(ca.certificate)
        client.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2 cipher suites name the certificate's key type
        client.set_ciphers(suite)
        assert peer_certificate(port, HOST, client) == expected.der


def test_ca_cert_credential_name_overrides_the_credential_ca(
    gateway: XdsHarness, backend: EchoServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    partner_ca = CertificateAuthority(tmp_path / "partner", "partner-ca")
    store(tmp_path / "secrets", "httpbin-credential", ca.issue(HOST), ca.certificate)
    store(tmp_path / "secrets", "partner-ca", ca=partner_ca.certificate)
    port = free_port()
    manifests = https_manifests(backend, port, "MUTUAL").replace(
        "credentialName: httpbin-credential", "credentialName: httpbin-credential, caCertCredentialName: partner-ca"
    )
    gateway.apply(manifests, credentials=load_credentials(tmp_path / "secrets").credentials)
    assert https_get(port, HOST, tls_client(ca.certificate, partner_ca.issue("partner", client=True))).status == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):  # the credential's own CA no longer admits clients
        https_get(port, HOST, tls_client(ca.certificate, ca.issue("client", client=True)))
