"""The file-system probe for `check_certificate_files` (effectful: it reads this machine's files)."""

from __future__ import annotations

import os

from reconciler.validation.certificates import CERTIFICATE, CRL, PRIVATE_KEY

# What a PEM file of each kind contains; Envoy refuses a file without it (an empty file, a key given as the
# certificate, ...). Real bundles are far smaller than the bytes read.
_PEM_MARKERS = {
    CERTIFICATE: b"-----BEGIN CERTIFICATE-----",
    PRIVATE_KEY: b"PRIVATE KEY-----",
    CRL: b"-----BEGIN X509 CRL-----",
}
_MAX_READ = 1024 * 1024


def local_file_probe(path: str, kind: str) -> str | None:
    if not os.path.exists(path):
        return "does not exist"
    if not os.path.isfile(path):
        return "is not a file"
    try:
        with open(path, "rb") as stream:
            head = stream.read(_MAX_READ)
    except OSError:
        return "is not readable"
    if _PEM_MARKERS[kind] not in head:
        return f"holds no PEM {kind}"
    return None
