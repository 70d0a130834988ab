"""Commit signature verification: apply only commits signed by a configured key (GPG or SSH).

Every commit between the last applied revision and the new head is checked (`git log old..new`, merges and
both sides of them included), not only the tip: otherwise one signed commit on top would launder any
unsigned ones below it. With no applied revision yet, only the new head is checked.

Verification never touches the user's keyring or git config: each call runs git with an empty throwaway
HOME and GNUPGHOME into which only the trusted GPG keys are imported (marked ultimately trusted, since
being configured is the trust decision), and SSH signatures are checked against the configured
allowed-signers file. Only git's "G" (good signature from a trusted key) passes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["SignatureError", "TrustedKeys", "UnverifiedCommit", "unverified_commits"]

DEFAULT_TIMEOUT: Final = 120.0
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_FIELD, _RECORD = "\x1f", "\x1e"
# sha, signature status, signer, key, subject: fields and records split by ASCII unit/record separators.
_FORMAT: Final = "%x1f".join(["%H", "%G?", "%GS", "%GK", "%s"]) + "%x1e"
# %G? letters (git-log(1)) other than G, as sentences about a commit.
_PROBLEMS: Final = {
    "N": "is not signed",
    "B": "has a bad signature (the commit was changed after it was signed)",
    "U": "is signed by a key that is not trusted{by}",
    "X": "has an expired signature{by}",
    "Y": "is signed by an expired key{by}",
    "R": "is signed by a revoked key{by}",
    "E": "has a signature that cannot be checked: its key is not among the trusted keys{by}",
}


class SignatureError(Exception):
    """Verification could not run (keys unreadable, git or gpg failed). The message is a sentence."""


@dataclass(frozen=True)
class TrustedKeys:
    """GPG public key files (armored or binary) and/or one SSH allowed-signers file (see ssh-keygen(1))."""

    gpg_keys: tuple[Path, ...] = ()
    ssh_allowed_signers: Path | None = None

    def __post_init__(self) -> None:
        if not self.gpg_keys and self.ssh_allowed_signers is None:
            raise ValueError("signature verification needs at least one GPG key file or an SSH allowed-signers file")


@dataclass(frozen=True)
class UnverifiedCommit:
    sha: str
    status: str  # git's %G? letter
    subject: str
    signer: str  # who the signature names, if anyone ("" when unsigned)

    @property
    def reason(self) -> str:
        by = f" ({self.signer})" if self.signer else ""
        return _PROBLEMS.get(self.status, "has a signature git could not judge{by}").format(by=by)

    def __str__(self) -> str:
        return f"commit {self.sha[:12]} ({self.subject!r}) {self.reason}"


def unverified_commits(
    repo_dir: Path, old: str | None, new: str, trust: TrustedKeys, timeout: float = DEFAULT_TIMEOUT
) -> list[UnverifiedCommit]:
    """The commits in `old..new` (just `new` when `old` is None) that are not signed by a trusted key,
    newest first; empty when all are. Raises `SignatureError` when verification itself cannot run."""
    for sha in (old, new):
        if sha is not None and _SHA.fullmatch(sha) is None:
            raise SignatureError(f"'{sha}' is not a full commit SHA")
    with tempfile.TemporaryDirectory(prefix="reconciler-verify-") as scratch:
        env = _isolated_env(Path(scratch))
        try:
            if trust.gpg_keys:
                _import_gpg_keys(trust.gpg_keys, env, timeout)
            revisions = [f"{old}..{new}"] if old is not None else ["-1", new]
            if old is not None:
                _require_commit(repo_dir, old, env, timeout)
            out = _git(repo_dir, _config(trust), ["log", f"--format={_FORMAT}", *revisions], env, timeout)
        finally:
            if trust.gpg_keys:
                _stop_gpg_daemons(env)
    return [c for c in _parse(out) if c.status != "G"]


def _parse(out: str) -> list[UnverifiedCommit]:
    commits = []
    for record in out.split(_RECORD):
        record = record.strip("\n")
        if not record:
            continue
        sha, status, signer, key, subject = record.split(_FIELD, 4)
        commits.append(UnverifiedCommit(sha, status, subject, signer or key))
    return commits


def _isolated_env(scratch: Path) -> dict[str, str]:
    gnupg = scratch / "gnupg"
    gnupg.mkdir(mode=0o700)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "GNUPGHOME": str(gnupg),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


def _config(trust: TrustedKeys) -> list[str]:
    options = ["-c", "log.showSignature=false"]
    if trust.ssh_allowed_signers is not None:
        options += ["-c", f"gpg.ssh.allowedSignersFile={trust.ssh_allowed_signers}"]
    return options


def _run(command: Sequence[str], env: Mapping[str, str], timeout: float, what: str, stdin: str = "") -> str:
    try:
        done = subprocess.run(
            list(command), env=dict(env), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise SignatureError(f"cannot {what}: the `{command[0]}` command is not installed") from None
    except subprocess.TimeoutExpired:
        raise SignatureError(f"cannot {what}: no answer within {timeout:g} s") from None
    if done.returncode != 0:
        detail = next((line.strip() for line in done.stderr.splitlines() if line.strip()), f"exit {done.returncode}")
        raise SignatureError(f"cannot {what}: {detail}")
    return done.stdout


def _git(repo_dir: Path, config: list[str], args: list[str], env: Mapping[str, str], timeout: float) -> str:
    return _run(["git", "-C", str(repo_dir), *config, *args], env, timeout, f"read commits in {repo_dir}")


def _require_commit(repo_dir: Path, sha: str, env: Mapping[str, str], timeout: float) -> None:
    try:
        _git(repo_dir, [], ["cat-file", "-e", f"{sha}^{{commit}}"], env, timeout)
    except SignatureError:
        raise SignatureError(
            f"the last applied commit {sha[:12]} is no longer in {repo_dir}, so the commits since it cannot be "
            "listed; check the history of the branch (was it rewritten?)"
        ) from None


def _import_gpg_keys(files: Sequence[Path], env: Mapping[str, str], timeout: float) -> None:
    for file in files:
        if not file.is_file():
            raise SignatureError(f"cannot read the trusted GPG key file {file}")
    _run(["gpg", "--batch", "--quiet", "--import", *map(str, files)], env, timeout, "import the trusted GPG keys")
    listing = _run(["gpg", "--batch", "--with-colons", "--list-keys"], env, timeout, "list the trusted GPG keys")
    # The first fpr after each pub line is the primary key's fingerprint; ownertrust 6 = ultimate.
    fingerprints, after_pub = [], False
    for line in listing.splitlines():
        kind, fields = line.split(":", 1)[0], line.split(":")
        if kind == "pub":
            after_pub = True
        elif kind == "fpr" and after_pub:
            fingerprints.append(fields[9])
            after_pub = False
    if not fingerprints:
        raise SignatureError(f"no GPG public key found in {', '.join(map(str, files))}")
    trust = "".join(f"{fpr}:6:\n" for fpr in fingerprints)
    _run(["gpg", "--batch", "--import-ownertrust"], env, timeout, "trust the GPG keys", stdin=trust)


def _stop_gpg_daemons(env: Mapping[str, str]) -> None:
    """gpg may start an agent (or keyboxd) for the throwaway home; it must not outlive the call."""
    gpgconf = shutil.which("gpgconf", path=env.get("PATH"))
    if gpgconf is not None:
        subprocess.run([gpgconf, "--kill", "all"], env=dict(env), capture_output=True, timeout=10, check=False)
