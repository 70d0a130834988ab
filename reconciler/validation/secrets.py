"""Private keys committed to the config repository: an error wherever they are, in any file.

Git history keeps a committed key forever and every clone carries it, so a key in the repository is a
leaked key. `build` only sees manifests, so this scan is its own pure function: give it every file of the
tree (any name, any content; binary files too) and it reports each PEM/OpenSSH/PGP private key block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.diagnostics import Finding, Location, Severity
from reconciler.memo import Memo

CODE = "private-key-committed"
_PRIVATE_KEY = re.compile(rb"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----")


def scan_for_secrets(files: Mapping[str, bytes]) -> list[Finding]:
    return [finding for path in sorted(files) for finding in scan_file(path, files[path])]


class SecretScanner:
    """`scan_for_secrets` across revisions: a file's findings are kept by its path and content, so a commit
    that changed one file scans one file (the content is usually the very bytes object of the last revision,
    whose hash Python keeps)."""

    def __init__(self) -> None:
        self._files: Memo[tuple[str, bytes], tuple[Finding, ...]] = Memo()

    def scan(self, files: Mapping[str, bytes]) -> list[Finding]:
        self._files.age()
        found: list[Finding] = []
        for path in sorted(files):
            content = files[path]
            found.extend(self._files.get((path, content), lambda: scan_file(path, content)))  # noqa: B023
        return found


def scan_file(path: str, content: bytes) -> tuple[Finding, ...]:
    findings = []
    for match in _PRIVATE_KEY.finditer(content):
        line = content.count(b"\n", 0, match.start()) + 1
        column = match.start() - (content.rfind(b"\n", 0, match.start()) + 1) + 1
        kind = match.group(1).decode("ascii")
        findings.append(
            Finding(
                Severity.ERROR,
                CODE,
                f"this file contains a private key ({kind}); everyone who can read the repository has it. "
                "Remove it from the repository (and its history), rotate the key, and keep keys on the Envoy "
                "hosts, referenced by path (tls.privateKey)",
                Location(path, line, column),
            )
        )
    return tuple(findings)
