"""Test certificates made on the spot with the `openssl` CLI: a CA, then server and client certificates it signs.

EC P-256 keys keep this fast (milliseconds each). Every file lands in a folder the test owns.
"""

from __future__ import annotations

import itertools
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
RSA_KEY = ["-newkey", "rsa:2048", "-nodes"]
_serials = itertools.count(1000)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class KeyPair:
    certificate: Path
    private_key: Path

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.read_bytes()

    @property
    def private_key_pem(self) -> bytes:
        return self.private_key.read_bytes()

    @property
    def der(self) -> bytes:
        """The certificate in DER form, as `SSLSocket.getpeercert(binary_form=True)` returns a peer's."""
        return ssl.PEM_cert_to_DER_cert(self.certificate.read_text())


class CertificateAuthority:
    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.certificate = directory / f"{name}.crt"
        self._key = directory / f"{name}.key"
        _openssl(
            "req", "-x509", *EC_KEY, "-keyout", str(self._key), "-out", str(self.certificate), "-days", "2",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(
        self, name: str, dns: tuple[str, ...] = (), uris: tuple[str, ...] = (), client: bool = False, rsa: bool = False
    ) -> KeyPair:
        """A certificate for `name` (its CN and, with `dns`/`uris`, its SANs), for a server or a client.

        Keys are EC P-256 unless `rsa` (slower to make: only for cases about the key type).
        """
        base = f"{name}-{next(_serials)}"
        key, csr, cert, extensions = (self.directory / f"{base}.{s}" for s in ("key", "csr", "crt", "ext"))
        sans = [f"DNS:{d}" for d in dns or (name,)] + [f"URI:{u}" for u in uris]
        usage = "clientAuth" if client else "serverAuth"
        extensions.write_text(f"subjectAltName={','.join(sans)}\nextendedKeyUsage={usage}\n")
        _openssl("req", *(RSA_KEY if rsa else EC_KEY), "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.certificate), "-CAkey", str(self._key),
            "-set_serial", str(next(_serials)), "-days", "2", "-out", str(cert), "-extfile", str(extensions),
        )  # fmt: skip
        return KeyPair(cert, key)
