"""SSH commit signing for tests: keys made on the spot, git options that sign, an allowed-signers file."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ssh_key(root: Path, name: str) -> Path:
    key = root / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def ssh_signing(key: Path) -> list[str]:
    return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"]


def allowed_signers(root: Path, *keys: Path) -> Path:
    lines = []
    for key in keys:
        kind, blob = key.with_suffix(".pub").read_text().split()[:2]
        lines.append(f"ada@example.test {kind} {blob}")
    path = root / "allowed_signers"
    path.write_text("\n".join(lines) + "\n")
    return path
