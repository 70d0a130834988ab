"""credentialName end to end without Envoy: the secrets-folder loader, Secrets per fleet, findings, redaction."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.diagnostics import Finding
from reconciler.pipeline import build
from reconciler.source.credentials import fingerprint, load_credentials
from reconciler.translate import Credential, TranslateOptions
from reconciler.translate.snapshot import LISTENER, REDACTED, SECRET, Snapshot
from tests.conformance.certs import CertificateAuthority, KeyPair


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


def put(folder: Path, files: dict[str, Path | bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = folder / name
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)


# ---------------------------------------------------------------------------------------------- loader


def test_loads_kubernetes_and_istio_file_names_and_ca_only_folders(ca: CertificateAuthority, tmp_path: Path) -> None:
    first, second = ca.issue("one.example.com"), ca.issue("two.example.com")
    put(tmp_path / "one", {"tls.crt": first.certificate, "tls.key": first.private_key, "ca.crt": ca.certificate})
    put(tmp_path / "two", {"cert": second.certificate, "key": second.private_key})
    put(tmp_path / "two-cacert", {"cacert": ca.certificate})
    put(tmp_path / "..data", {"tls.crt": first.certificate})  # Kubernetes mount machinery: not a credential

    loaded = load_credentials(tmp_path)

    assert sorted(loaded.credentials) == ["one", "two", "two-cacert"]
    assert loaded.credentials["one"] == Credential(
        first.certificate_pem, first.private_key_pem, ca.certificate.read_bytes()
    )
    assert loaded.credentials["two"] == Credential(second.certificate_pem, second.private_key_pem, None)
    assert loaded.credentials["two-cacert"] == Credential(b"", b"", ca.certificate.read_bytes())
    assert loaded.problems == {}


def test_unusable_credentials_are_reported_not_loaded(ca: CertificateAuthority, tmp_path: Path) -> None:
    first, second = ca.issue("one.example.com"), ca.issue("two.example.com")
    put(tmp_path / "mismatched", {"tls.crt": first.certificate, "tls.key": second.private_key})
    put(tmp_path / "half", {"tls.crt": first.certificate})
    put(tmp_path / "garbage", {"tls.crt": b"not a certificate", "tls.key": b"not a key"})
    put(tmp_path / "empty", {})
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(first.private_key), "-out", str(encrypted), "-aes256", "-passout", "pass:x"],
        check=True,
        capture_output=True,
    )
    put(tmp_path / "encrypted", {"tls.crt": first.certificate, "tls.key": encrypted})

    loaded = load_credentials(tmp_path)

    assert loaded.credentials == {}
    assert sorted(loaded.problems) == ["empty", "encrypted", "garbage", "half", "mismatched"]
    assert "tls.key is missing" in loaded.problems["half"]
    assert "encrypted" in loaded.problems["encrypted"]


def test_a_missing_folder_is_an_empty_set(tmp_path: Path) -> None:
    loaded = load_credentials(tmp_path / "nowhere")
    assert (loaded.credentials, loaded.problems) == ({}, {})


def test_fingerprint_changes_exactly_when_files_do(ca: CertificateAuthority, tmp_path: Path) -> None:
    pair = ca.issue("one.example.com")
    put(tmp_path / "one", {"tls.crt": pair.certificate, "tls.key": pair.private_key})
    before = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == before
    (tmp_path / "unrelated.txt").write_text("not a credential folder")
    assert fingerprint(tmp_path) == before

    rotated = ca.issue("one.example.com")
    staged = tmp_path / ".staging"
    put(staged, {"tls.crt": rotated.certificate})
    os.replace(staged / "tls.crt", tmp_path / "one" / "tls.crt")  # an atomic swap: same name, new inode
    assert fingerprint(tmp_path) != before
    assert load_credentials(tmp_path).fingerprint == fingerprint(tmp_path)


# ---------------------------------------------------------------------------------------------- translation

MANIFESTS = """
apiVersion: reconciler/v1
kind: Fleet
metadata: {name: public}
spec: {selector: {app: public}}
---
apiVersion: reconciler/v1
kind: Fleet
metadata: {name: partners}
spec: {selector: {app: partners}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public}
spec:
  selector: {app: public}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [www.example.com]
    tls: {mode: SIMPLE, credentialName: www}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: partners}
spec:
  selector: {app: partners}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [partners.example.com]
    tls: {mode: MUTUAL, credentialName: partners}
"""


def translate(credentials: dict[str, Credential] | None) -> tuple[dict[str, Snapshot], list[Finding]]:
    result = build({"gw.yaml": MANIFESTS.encode()}, TranslateOptions(credentials=credentials))
    return dict(result.snapshots), list(result.findings)


def material(pair: KeyPair, ca: CertificateAuthority | None = None) -> Credential:
    return Credential(pair.certificate_pem, pair.private_key_pem, ca.certificate.read_bytes() if ca else None)


def test_each_fleet_gets_only_the_secrets_its_gateways_reference(ca: CertificateAuthority) -> None:
    credentials = {
        "www": material(ca.issue("www.example.com")),
        "partners": material(ca.issue("partners.example.com"), ca),
        "unused": material(ca.issue("unused.example.com"), ca),
    }
    snapshots, findings = translate(credentials)
    assert findings == []
    assert list(snapshots["public"].of_type(SECRET)) == ["kubernetes://www"]
    assert list(snapshots["partners"].of_type(SECRET)) == ["kubernetes://partners", "kubernetes://partners-cacert"]
    secret = snapshots["partners"].of_type(SECRET)["kubernetes://partners-cacert"].message()
    assert secret.validation_context.trusted_ca.inline_bytes == ca.certificate.read_bytes()


def test_the_client_ca_may_come_from_a_separate_cacert_credential(ca: CertificateAuthority) -> None:
    credentials = {
        "www": material(ca.issue("www.example.com")),
        "partners": material(ca.issue("partners.example.com")),
        "partners-cacert": Credential(ca_certificate=ca.certificate.read_bytes()),
    }
    snapshots, findings = translate(credentials)
    assert findings == []
    assert "kubernetes://partners-cacert" in snapshots["partners"].of_type(SECRET)


def test_missing_and_incomplete_credentials_are_errors_at_the_reference(ca: CertificateAuthority) -> None:
    www, partners = line_of("credentialName: www"), line_of("credentialName: partners")
    _, findings = translate({"partners": Credential(ca_certificate=ca.certificate.read_bytes())})
    assert sorted((f.code, f.severity.value, f.location.line) for f in findings) == [
        ("credential-incomplete", "error", partners),  # a CA but no key pair
        ("credential-not-found", "error", www),
    ]
    _, findings = translate({"www": material(ca.issue("www.example.com")), "partners": material(ca.issue("p"))})
    assert [(f.code, f.location.line) for f in findings] == [("credential-ca-not-found", partners)]


def line_of(text: str) -> int:
    return next(i for i, line in enumerate(MANIFESTS.splitlines(), 1) if text in line)


def test_without_a_secrets_folder_listeners_name_secrets_and_nothing_is_reported() -> None:
    """`validate` and `render` run where no key material exists: no Secret, no finding."""
    snapshots, findings = translate(None)
    assert findings == []
    assert snapshots["public"].of_type(SECRET) == {}
    listener = snapshots["public"].of_type(LISTENER)["0.0.0.0_443"].message()
    assert b"kubernetes://www" in listener.SerializeToString()
    assert "secrets" not in snapshots["public"].to_dict()


def test_render_redacts_private_keys_but_versions_still_follow_them(ca: CertificateAuthority) -> None:
    pair, rotated = ca.issue("www.example.com"), ca.issue("www.example.com")
    partners = material(ca.issue("partners.example.com"), ca)
    snapshots, _ = translate({"www": material(pair), "partners": partners})
    rendered = snapshots["public"].to_dict()
    (secret,) = rendered["secrets"]
    assert secret["tlsCertificate"]["privateKey"] == {"inlineBytes": REDACTED}
    assert secret["tlsCertificate"]["certificateChain"]["inlineBytes"]  # the certificate is public: shown
    assert pair.private_key_pem.decode() not in str(rendered)

    rotated_snapshots, _ = translate({"www": material(rotated), "partners": partners})
    assert rotated_snapshots["public"].version != snapshots["public"].version
    assert rotated_snapshots["partners"].version == snapshots["partners"].version
