"""Commit signature verification with real signed commits: SSH keys made here, GPG keys when gpg exists.

Commits are made in a working repository and checked in a bare clone of it, like the daemon's mirror.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.source.signatures import SignatureError, TrustedKeys, unverified_commits
from tests.signing import allowed_signers, ssh_key, ssh_signing


class Repo:
    """A working repository whose commits are signed (or not) as each test says."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.mirrors = 0
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "GNUPGHOME": str(self.home / "gnupg"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "Ada Tester",
            "GIT_AUTHOR_EMAIL": "ada@example.test",
            "GIT_COMMITTER_NAME": "Ada Tester",
            "GIT_COMMITTER_EMAIL": "ada@example.test",
        }
        self.git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def commit(self, message: str, signing: list[str] | None = None) -> str:
        (self.work / f"{message}.txt").write_text(message)  # one file per commit: branches merge cleanly
        self.git("add", "-A")
        sign = ["-S"] if signing else ["--no-gpg-sign"]
        self.git(*(signing or []), "commit", "--quiet", *sign, "-m", message)
        return self.git("rev-parse", "HEAD")

    def mirror(self) -> Path:
        self.mirrors += 1
        bare = self.root / f"mirror-{self.mirrors}.git"
        self.git("clone", "--quiet", "--bare", "--mirror", str(self.work), str(bare), cwd=self.root)
        return bare


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


@pytest.fixture
def trusted(tmp_path: Path) -> Path:
    return ssh_key(tmp_path, "trusted")


@needs_ssh_keygen
def test_a_range_signed_by_trusted_ssh_keys_passes(repo: Repo, trusted: Path, tmp_path: Path) -> None:
    base = repo.commit("initial, unsigned: before the range")
    repo.commit("one", ssh_signing(trusted))
    head = repo.commit("two", ssh_signing(trusted))
    trust = TrustedKeys(ssh_allowed_signers=allowed_signers(tmp_path, trusted))
    assert unverified_commits(repo.mirror(), base, head, trust) == []


@needs_ssh_keygen
def test_an_unsigned_commit_under_a_signed_tip_is_reported(repo: Repo, trusted: Path, tmp_path: Path) -> None:
    base = repo.commit("base", ssh_signing(trusted))
    sneaky = repo.commit("sneaky change")
    head = repo.commit("looks fine", ssh_signing(trusted))
    trust = TrustedKeys(ssh_allowed_signers=allowed_signers(tmp_path, trusted))
    found = unverified_commits(repo.mirror(), base, head, trust)
    assert [(c.sha, c.status) for c in found] == [(sneaky, "N")]
    assert str(found[0]) == f"commit {sneaky[:12]} ('sneaky change') is not signed"


@needs_ssh_keygen
def test_a_commit_signed_by_an_unlisted_ssh_key_is_reported(repo: Repo, trusted: Path, tmp_path: Path) -> None:
    stranger = ssh_key(tmp_path, "stranger")
    base = repo.commit("base", ssh_signing(trusted))
    head = repo.commit("signed by someone else", ssh_signing(stranger))
    trust = TrustedKeys(ssh_allowed_signers=allowed_signers(tmp_path, trusted))
    found = unverified_commits(repo.mirror(), base, head, trust)
    assert [(c.sha, c.status) for c in found] == [(head, "U")]
    assert found[0].reason.startswith("is signed by a key that is not trusted (SHA256:")


@needs_ssh_keygen
def test_without_an_applied_revision_only_the_head_is_checked(repo: Repo, trusted: Path, tmp_path: Path) -> None:
    repo.commit("history from before verification was turned on")
    head = repo.commit("first verified", ssh_signing(trusted))
    trust = TrustedKeys(ssh_allowed_signers=allowed_signers(tmp_path, trusted))
    assert unverified_commits(repo.mirror(), None, head, trust) == []
    unsigned_head = repo.commit("unsigned head")
    assert [c.sha for c in unverified_commits(repo.mirror(), None, unsigned_head, trust)] == [unsigned_head]


@needs_ssh_keygen
def test_both_sides_of_a_merge_are_checked(repo: Repo, trusted: Path, tmp_path: Path) -> None:
    base = repo.commit("base", ssh_signing(trusted))
    repo.git("checkout", "--quiet", "-b", "feature")
    unsigned = repo.commit("unsigned work on a branch")
    repo.git("checkout", "--quiet", "main")
    repo.commit("main moves on", ssh_signing(trusted))
    repo.git(*ssh_signing(trusted), "merge", "--quiet", "-S", "--no-ff", "-m", "signed merge", "feature")
    head = repo.git("rev-parse", "HEAD")
    trust = TrustedKeys(ssh_allowed_signers=allowed_signers(tmp_path, trusted))
    assert [c.sha for c in unverified_commits(repo.mirror(), base, head, trust)] == [unsigned]


@needs_ssh_keygen
def test_a_rewritten_history_still_checks_every_new_commit(repo: Repo, trusted: Path, tmp_path: Path) -> None:
    base = repo.commit("base", ssh_signing(trusted))
    applied = repo.commit("applied", ssh_signing(trusted))
    mirror = repo.mirror()
    repo.git("reset", "--quiet", "--hard", base)
    rewritten = repo.commit("force-pushed, unsigned")
    repo.git("push", "--quiet", "--force", str(mirror), "main:main")
    trust = TrustedKeys(ssh_allowed_signers=allowed_signers(tmp_path, trusted))
    assert [c.sha for c in unverified_commits(mirror, applied, rewritten, trust)] == [rewritten]


def test_setup_problems_are_sentences(repo: Repo, tmp_path: Path) -> None:
    head = repo.commit("x")
    trust = TrustedKeys(ssh_allowed_signers=tmp_path / "allowed_signers")
    with pytest.raises(SignatureError, match="no longer in"):
        unverified_commits(repo.mirror(), "1" * 40, head, trust)
    with pytest.raises(SignatureError, match="not a full commit SHA"):
        unverified_commits(repo.mirror(), "--output=/tmp/x", head, trust)
    with pytest.raises(SignatureError, match="cannot read the trusted GPG key file"):
        unverified_commits(repo.mirror(), None, head, TrustedKeys(gpg_keys=(tmp_path / "missing.asc",)))
    with pytest.raises(ValueError, match="at least one GPG key file or an SSH allowed-signers file"):
        TrustedKeys()


# ---------------------------------------------------------------------- GPG


needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg (GnuPG)")


@pytest.fixture
def gpg_home(repo: Repo) -> Iterator[Path]:
    home = Path(repo.env["GNUPGHOME"])
    home.mkdir(mode=0o700)
    yield home
    subprocess.run(["gpgconf", "--kill", "all"], env=repo.env, capture_output=True, check=False)


def gpg_key(repo: Repo, email: str, export_to: Path) -> str:
    """A passphrase-less signing key in the repo's GNUPGHOME; its public half exported to `export_to`."""
    batch = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*batch, "--quick-gen-key", email, "ed25519", "sign", "never"], env=repo.env, check=True)
    exported = subprocess.run(["gpg", "--armor", "--export", email], env=repo.env, capture_output=True, check=True)
    export_to.write_bytes(exported.stdout)
    return email


def gpg_signing(email: str) -> list[str]:
    return ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={email}"]


@needs_gpg
@pytest.mark.usefixtures("gpg_home")
def test_gpg_signed_commits_by_a_trusted_key_pass_and_others_do_not(repo: Repo, tmp_path: Path) -> None:
    trusted = gpg_key(repo, "release@example.test", tmp_path / "release.asc")
    stranger = gpg_key(repo, "stranger@example.test", tmp_path / "stranger.asc")
    base = repo.commit("base")
    good = repo.commit("signed by release", gpg_signing(trusted))
    trust = TrustedKeys(gpg_keys=(tmp_path / "release.asc",))
    assert unverified_commits(repo.mirror(), base, good, trust) == []

    bad = repo.commit("signed by a stranger", gpg_signing(stranger))
    found = unverified_commits(repo.mirror(), base, bad, trust)
    assert [(c.sha, c.status) for c in found] == [(bad, "E")]
    assert "its key is not among the trusted keys" in str(found[0])

    both = TrustedKeys(gpg_keys=(tmp_path / "release.asc", tmp_path / "stranger.asc"))
    assert unverified_commits(repo.mirror(), base, bad, both) == []
