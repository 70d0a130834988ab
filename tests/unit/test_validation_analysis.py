"""Cross-resource analysis, the secret scan and the certificate-file check: what they report, and where."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.diagnostics import Finding, Location, Severity
from reconciler.manifests.loader import load_manifests
from reconciler.pipeline import build
from reconciler.translate import translate_fleet
from reconciler.validation import SecretScanner, check_certificate_files, scan_for_secrets, secrets
from reconciler.validation.localfiles import local_file_probe
from tests.unit.manifest_helpers import FLEET, SERVICE, documents, gateway, http_server, virtual_service

GATEWAY = gateway(http_server(80, '["*.example.com"]'))
BASE = documents(FLEET, SERVICE, GATEWAY)


def findings(files: dict[str, str]) -> list[Finding]:
    result = build({name: textwrap.dedent(text).encode() for name, text in files.items()})
    return list(result.findings)


def by_code(found: list[Finding], code: str) -> list[Finding]:
    return [f for f in found if f.code == code]


def test_two_virtual_services_on_one_host_name_the_merge_order_and_every_file() -> None:
    found = findings(
        {
            "base.yaml": BASE,
            "a.yaml": virtual_service(
                "alpha",
                "shop.example.com",
                "{match: [{uri: {prefix: /a}}], route: [{destination: {host: app.internal}}]}",
            ),
            "b.yaml": virtual_service("beta", "shop.example.com"),
        }
    )
    (conflict,) = by_code(found, "vs-host-conflict")
    assert conflict.severity is Severity.WARNING
    assert "default/alpha, default/beta" in conflict.message
    assert conflict.location.file == "b.yaml"
    assert [loc.file for loc in conflict.related] == ["a.yaml"]


def test_a_catch_all_hidden_by_another_virtual_service_is_unreachable() -> None:
    found = findings(
        {
            "base.yaml": BASE,
            "a.yaml": virtual_service("alpha", "shop.example.com"),
            "b.yaml": virtual_service("beta", "shop.example.com"),
        }
    )
    (shadowed,) = by_code(found, "unreachable-rule")
    assert shadowed.location.file == "b.yaml"
    assert "default/alpha" in shadowed.message


def test_protocol_conflicts_across_gateways_of_a_fleet_are_errors_naming_both() -> None:
    tcp_gateway = gateway('{port: {number: 80, name: tcp, protocol: TCP}, hosts: ["*.example.com"]}', name="tcp")
    found = findings({"base.yaml": BASE, "tcp.yaml": tcp_gateway})
    (conflict,) = by_code(found, "protocol-conflict")
    assert conflict.is_error
    assert {conflict.location.file, *(loc.file for loc in conflict.related)} == {"base.yaml", "tcp.yaml"}


def test_duplicate_passthrough_sni_is_an_error() -> None:
    passthrough = gateway(
        '{port: {number: 443, name: tls, protocol: TLS}, hosts: ["*.example.com"], tls: {mode: PASSTHROUGH}}'
    )

    def tls_vs(name: str) -> str:
        return f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: {name}}}
        spec:
          hosts: [db.example.com]
          gateways: [gw]
          tls: [{{match: [{{sniHosts: [db.example.com]}}], route: [{{destination: {{host: app.internal}}}}]}}]
        """

    found = findings(
        {"base.yaml": documents(FLEET, SERVICE, passthrough), "a.yaml": tls_vs("a"), "b.yaml": tls_vs("b")}
    )
    (duplicate,) = by_code(found, "duplicate-sni")
    assert duplicate.location.file == "b.yaml" and duplicate.related[0].file == "a.yaml"


def test_a_host_outside_the_gateway_is_reported_per_host() -> None:
    found = findings({"base.yaml": BASE, "vs.yaml": virtual_service("v", "shop.other.org")})
    (outside,) = by_code(found, "vs-host-not-in-gateway")
    assert "shop.other.org" in outside.message and outside.location.file == "vs.yaml"


def test_a_virtual_service_without_gateways_is_flagged() -> None:
    vs = virtual_service("mesh-only", "shop.example.com", gateways=None)
    found = findings({"base.yaml": BASE, "vs.yaml": vs})
    assert by_code(found, "vs-without-gateway")


def test_private_keys_are_found_in_any_file_with_their_line() -> None:
    key = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB...\n-----END RSA PRIVATE KEY-----\n"
    files = {
        "certs/server.key": key,
        "notes.txt": b"first line\n  " + key.replace(b"RSA ", b""),
        "binary.bin": b"\x00\x01" + key.replace(b"RSA", b"EC"),
        "certs/server.crt": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ".env": b"KEY=-----BEGIN OPENSSH PRIVATE KEY-----\n",
    }
    found = scan_for_secrets(files)
    assert {(f.location.file, f.location.line, f.location.column) for f in found} == {
        ("certs/server.key", 1, 1),
        ("notes.txt", 2, 3),
        ("binary.bin", 1, 3),
        (".env", 1, 5),
    }
    assert all(f.is_error and f.code == "private-key-committed" for f in found)


def test_certificate_files_are_checked_with_the_given_probe_and_severity() -> None:
    manifests = load_manifests(
        {
            "gw.yaml": textwrap.dedent(
                """
                apiVersion: networking.istio.io/v1
                kind: Gateway
                metadata: {name: gw}
                spec:
                  servers:
                  - port: {number: 443, name: https, protocol: HTTPS}
                    hosts: [a.example.com]
                    tls: {mode: SIMPLE, serverCertificate: /etc/certs/a.pem, privateKey: /etc/certs/a.key}
                """
            ).encode()
        }
    )
    present = {"/etc/certs/a.pem"}

    def probe(path: str, kind: str) -> str | None:
        return None if path in present else "does not exist"

    (missing,) = check_certificate_files(manifests, probe, Severity.WARNING)
    assert missing.severity is Severity.WARNING and "/etc/certs/a.key" in missing.message
    assert missing.location == Location("gw.yaml", 9, 62)
    (as_error,) = check_certificate_files(manifests, probe, Severity.ERROR)
    assert as_error.is_error


def test_the_local_probe_checks_what_a_file_holds(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n")
    (tmp_path / "empty.pem").write_text("")
    assert local_file_probe(str(cert), "certificate") is None
    assert local_file_probe(str(key), "private key") is None
    assert local_file_probe(str(key), "certificate") == "holds no PEM certificate"
    assert local_file_probe(str(tmp_path / "empty.pem"), "private key") == "holds no PEM private key"
    assert local_file_probe(str(tmp_path / "missing.pem"), "certificate") == "does not exist"
    assert local_file_probe(str(tmp_path), "certificate") == "is not a file"


def test_what_does_not_fit_a_listener_is_reported_once_by_validation_not_again_by_translation() -> None:
    servers = gateway(
        '{port: {number: 9000, name: tcp, protocol: TCP}, hosts: ["*"]}',
        '{port: {number: 5353, name: dns, protocol: UDP}, hosts: ["*"]}',
    )
    second_tcp = gateway('{port: {number: 9000, name: tcp, protocol: TCP}, hosts: ["*"]}', name="other")
    result = build({"base.yaml": documents(FLEET, SERVICE, servers).encode(), "other.yaml": second_tcp.encode()})
    found = [f.code for f in result.findings]
    assert found.count("protocol-conflict") == 1 and found.count("unsupported-protocol") == 1
    assert "edge" in result.blocked  # the error holds the fleet back before translation
    assert translate_fleet(result.config, "edge").findings == ()  # translating anyway reports nothing twice


def test_the_secret_scanner_rescans_only_changed_files(monkeypatch: pytest.MonkeyPatch) -> None:
    key = b"a: 1\n-----BEGIN EC PRIVATE KEY-----\n"
    files = {"a.yaml": b"a: 1\n", "keys/k.pem": key}
    scanner = SecretScanner()
    assert scanner.scan(files) == scan_for_secrets(files) != []
    scanned: list[str] = []
    original = secrets.scan_file
    monkeypatch.setattr(secrets, "scan_file", lambda path, content: scanned.append(path) or original(path, content))
    changed = {**files, "a.yaml": b"a: 2\n", "new.yaml": key}
    fresh = scan_for_secrets(changed)
    scanned.clear()
    assert scanner.scan(changed) == fresh
    assert sorted(scanned) == ["a.yaml", "new.yaml"]
    removed = {"a.yaml": b"a: 2\n", "new.yaml": b"a: 3\n"}  # the key file deleted, the other key edited out
    assert scan_for_secrets(removed) == []
    scanned.clear()
    assert scanner.scan(removed) == []
    assert scanned == ["new.yaml"]
    copied = {path: bytes(bytearray(content)) for path, content in removed.items()}  # equal, not the same objects
    scanned.clear()
    assert scanner.scan(copied) == [] and scanned == []
