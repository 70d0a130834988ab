"""TLS credentials for `credentialName`: a secrets folder on the daemon's host, never the config repo.

Layout, one sub-folder per credential name (Kubernetes secret keys, so a mounted Secret works as is):

    <dir>/<name>/tls.crt   certificate chain (PEM)      also accepted: cert
    <dir>/<name>/tls.key   private key (PEM)            also accepted: key
    <dir>/<name>/ca.crt    CA for client certificates   also accepted: cacert     (optional; MUTUAL)

A folder with only a CA (`<name>-cacert/ca.crt`) serves the CA of credential `<name>`, as istio's separate
`<name>-cacert` Secret does. Entries starting with `.` are skipped (Kubernetes' `..data` mount machinery);
symlinks are followed.

`fingerprint` is cheap (one `stat` per file, no reads) so the daemon can poll it to notice rotation; each
`load_credentials` computes it *before* reading, so a rotation that lands mid-read shows up on the next poll.
A credential whose files do not form a usable pair (unparsable PEM, a key that does not match its
certificate: e.g. a rotation caught halfway) is left out and reported in `problems`, so the caller can keep
serving the previous material instead of sending Envoy a pair it would reject.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.translate.secrets import Credential

CERTIFICATE_FILES = ("tls.crt", "cert")
KEY_FILES = ("tls.key", "key")
CA_FILES = ("ca.crt", "cacert")


@dataclass(frozen=True)
class LoadedCredentials:
    credentials: Mapping[str, Credential]
    fingerprint: str
    problems: Mapping[str, str] = field(default_factory=dict)  # credential name → what is wrong with it


def load_credentials(directory: Path) -> LoadedCredentials:
    """Every credential under `directory`; a missing folder is an empty set (nothing configured yet)."""
    stamp = fingerprint(directory)
    credentials: dict[str, Credential] = {}
    problems: dict[str, str] = {}
    for folder in _credential_folders(directory):
        try:
            credentials[folder.name] = _load(folder)
        except (OSError, ValueError, ssl.SSLError) as exc:
            problems[folder.name] = _describe(exc)
    return LoadedCredentials(credentials, stamp, problems)


def fingerprint(directory: Path) -> str:
    """Changes when any credential file is added, removed, replaced or rewritten (names, inodes, sizes, mtimes)."""
    digest = hashlib.sha256()
    for folder in _credential_folders(directory):
        for name in (*CERTIFICATE_FILES, *KEY_FILES, *CA_FILES):
            try:
                info = (folder / name).stat()
            except OSError:
                continue
            digest.update(f"{folder.name}/{name}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _credential_folders(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [e for e in entries if not e.name.startswith(".") and e.is_dir()]


def _load(folder: Path) -> Credential:
    certificate, key, ca = (_first(folder, names) for names in (CERTIFICATE_FILES, KEY_FILES, CA_FILES))
    if certificate is None and key is None and ca is None:
        raise ValueError(f"no {'/'.join(CERTIFICATE_FILES)}, {'/'.join(KEY_FILES)} or {'/'.join(CA_FILES)} file")
    if (certificate is None) != (key is None):
        missing = CERTIFICATE_FILES[0] if certificate is None else KEY_FILES[0]
        raise ValueError(f"{missing} is missing: a certificate needs its private key and the other way round")
    credential = _read(certificate, key, ca)
    checker = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if certificate is not None and key is not None:
        # OpenSSL parses both and checks that the key belongs to the certificate; an encrypted key fails here
        # (the callback refuses to supply a password) instead of prompting on a terminal.
        checker.load_cert_chain(certificate, key, password=_no_password)
    if ca is not None:
        checker.load_verify_locations(cafile=str(ca))
    # OpenSSL checked the files, not the bytes read before: they must still be the same.
    if _read(certificate, key, ca) != credential:
        raise ValueError("the files changed while being read; the next load picks up the new ones")
    return credential


def _read(certificate: Path | None, key: Path | None, ca: Path | None) -> Credential:
    return Credential(
        certificate_chain=certificate.read_bytes() if certificate else b"",
        private_key=key.read_bytes() if key else b"",
        ca_certificate=ca.read_bytes() if ca else None,
    )


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _no_password() -> bytes:
    raise ValueError("the private key is encrypted; give Envoy an unencrypted key (file mode 0600)")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a usable certificate/key/CA ({exc.reason or exc})"
    if isinstance(exc, OSError):
        return f"cannot read {exc.filename}: {exc.strerror}"
    return str(exc)
