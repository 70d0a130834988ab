"""The `source` stage: the config repository, read with GitPython straight from the object database.

`GitSource` keeps a local bare mirror of one branch of the remote (under the daemon's state folder, so it
survives restarts and lets the daemon start from the last fetched revision while the remote is down) and
reads manifests at a SHA without a checkout. `read_tree_at` does the same for a plain local repository
(`reconciler plan --repo DIR --base REF --head REF`); both share `_read_tree`.

Every call blocks (the daemon runs them in worker threads). Network calls run with a timeout and with
`GIT_TERMINAL_PROMPT=0`, so a missing credential fails instead of waiting for a prompt nobody answers.
`SourceError` messages are meant for users and never contain credentials: userinfo is stripped from every
URL that reaches a message, including URLs quoted in git's own error output.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import threading
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
from git import Repo
from git.cmd import Git
from git.exc import GitCommandError, GitCommandNotFound, InvalidGitRepositoryError, NoSuchPathError
from git.objects import Tree
from git.refs.symbolic import SymbolicReference

from reconciler.redact import redact_text, redact_url, url_secrets

log = structlog.get_logger("reconciler.source")

__all__ = ["Commit", "GitSource", "SourceError", "read_tree_at", "redact_url", "resolve_at"]

DEFAULT_TIMEOUT: Final = 60.0

# Which files are manifests; the same rule as `reconciler.manifests.loader` (a test keeps them equal). Not
# imported from there, so the I/O edge does not depend on the parser.
MANIFEST_SUFFIXES: Final = (".yaml", ".yml")

# Added to the environment of every git process: never prompt on a terminal (a daemon has nobody to answer;
# a missing credential must fail), and ask Git Credential Manager, if installed, not to open a dialog.
_GIT_ENV: Final = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}

_FILE_TYPE_MASK: Final = 0o170000
_REGULAR_FILE: Final = 0o100000  # 100644 and 100755; symlinks are 120000, submodules (gitlinks) 160000

_MAX_DETAIL_LEN: Final = 300
_FULL_SHA: Final = re.compile("[0-9a-f]{40}")


class SourceError(Exception):
    """The config repository could not be reached or read. The message is a sentence for users."""


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str  # first line
    author: str  # "Name <email>"
    committed_at: int  # unix seconds, committer date


def _scrub(text: str, url: str | None = None) -> str:
    return redact_text(text, url_secrets(url) if url is not None else ())


def _normalize_path(path: str) -> str:
    """A repo-relative folder as git names it: "" for the root, else "a/b" (no "./", no trailing "/")."""
    cleaned = posixpath.normpath(path.strip() or ".")
    if cleaned.startswith("/") or cleaned == ".." or cleaned.startswith("../"):
        raise SourceError(
            f"The manifests path '{path}' must be a folder inside the repository (like '.' or 'gateways')."
        )
    return "" if cleaned == "." else cleaned


def _is_local_path(url: str) -> bool:
    """git's rule: no "://", and no ":" or a "/" before the first ":" (else it is scp-like host:path)."""
    if "://" in url:
        return False
    colon = url.find(":")
    slash = url.find("/")
    return colon < 0 or (0 <= slash < colon)


def _git_detail(err: GitCommandError, url: str | None = None) -> str:
    """The useful line of git's error output, without "fatal:" and without credentials."""
    stderr = err.stderr
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else str(stderr or "")
    # GitCommandError wraps the output as "\n  stderr: '<output>'".
    wrapped = text.strip()
    if wrapped.startswith("stderr: '") and wrapped.endswith("'"):
        text = wrapped[len("stderr: '") : -1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return f"git exited with status {err.status}"
    if lines[0].startswith("Timeout:"):
        return "git did not finish in time"
    # The first line says what went wrong (ssh's own message comes before git's generic "Could not read
    # from remote repository"); warnings and hints are noise.
    chosen = next((line for line in lines if not line.lower().startswith(("warning:", "hint:"))), lines[-1])
    for prefix in ("fatal:", "error:", "remote:"):
        chosen = chosen.removeprefix(prefix).strip()
    chosen = _scrub(chosen, url)
    if len(chosen) > _MAX_DETAIL_LEN:
        chosen = chosen[: _MAX_DETAIL_LEN - 1] + "…"
    return chosen.rstrip(".")


@dataclass(frozen=True)
class GitCredentials:
    """How to authenticate to the remote, from files only: secrets never sit in the URL, the command line
    or a log. An SSH key (with a pinned known_hosts file: unknown host keys are refused), or an HTTPS token
    handed to git by a credential helper that reads the file when git asks."""

    ssh_key_file: str = ""
    known_hosts_file: str = ""
    token_file: str = ""
    token_username: str = "x-access-token"  # GitHub's; GitLab accepts any name with a token

    def git_config(self) -> list[str]:
        if not self.token_file:
            return []
        helper = (
            f"!f() {{ echo username={shlex.quote(self.token_username)}; printf password=; "
            f"cat {shlex.quote(self.token_file)}; echo; }}; f"
        )
        return ["-c", "credential.helper=", "-c", f"credential.helper={helper}"]  # only ours, none inherited

    def environment(self) -> dict[str, str]:
        if not self.ssh_key_file:
            return {}
        ssh = ["ssh", "-i", self.ssh_key_file, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
        if self.known_hosts_file:
            ssh += ["-o", f"UserKnownHostsFile={self.known_hosts_file}", "-o", "StrictHostKeyChecking=yes"]
        return {"GIT_SSH_COMMAND": shlex.join(ssh)}


def _run(git: Git, args: Sequence[str], timeout: float | None = None, credentials: GitCredentials | None = None) -> str:
    """Run one git command (args without the leading "git") and return its stdout as text.

    Raises GitCommandError / GitCommandNotFound; callers turn them into SourceError with their context.
    Never let str() of those exceptions reach a user: they quote the command line.
    """
    config = credentials.git_config() if credentials else []
    command = [Git.GIT_PYTHON_GIT_EXECUTABLE or "git", *config, *args]
    env = {**_GIT_ENV, **(credentials.environment() if credentials else {})}
    out = git.execute(command, env=env, kill_after_timeout=timeout, stdout_as_string=True)
    return out if isinstance(out, str) else str(out)


def _open_repo(repo_dir: Path, what: str) -> Repo:
    try:
        return Repo(str(repo_dir))
    except NoSuchPathError:
        raise SourceError(f"The {what} {repo_dir} does not exist.") from None
    except InvalidGitRepositoryError:
        raise SourceError(f"The {what} {repo_dir} is not a git repository (give its top folder).") from None


def _rev_parse(repo: Repo, ref: str, where: str) -> str:
    """Full SHA of the commit `ref` names in `repo` (branch, tag, SHA, short SHA, `HEAD~2`, ...)."""
    if not ref or ref.startswith("-"):
        raise SourceError(f"'{ref}' is not a git revision.")
    if _FULL_SHA.fullmatch(ref) and _is_commit(repo, ref):  # the daemon's case, answered without a git process
        return ref
    try:
        sha = _run(repo.git, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"])
    except GitCommandError:
        raise SourceError(f"The revision '{ref}' is not a commit in {where}.") from None
    except GitCommandNotFound:
        raise SourceError("git is not installed (the `git` command was not found).") from None
    return sha.strip()


def _read_tree(
    repo: Repo,
    sha: str,
    path: str,
    where: str,
    suffixes: tuple[str, ...] | None = MANIFEST_SUFFIXES,
    blobs: BlobCache | None = None,
) -> dict[str, bytes]:
    """Every regular blob under `path` at resolved commit `sha` whose name ends with one of `suffixes`
    (None: every file), keyed relative to `path`.

    Straight from the object database, one long-lived `git cat-file` process for all objects.
    Symlinks and submodules are skipped: they are not content of this tree. `blobs` (content by blob id,
    kept by the caller between revisions) is read before the object database and filled: a blob id names
    its content, so a revision that changed one file reads one blob (10k files: 0.8 s → milliseconds).
    """
    return _list_tree(repo, _root_tree(repo, sha, path, where), sha, where, suffixes, blobs)


def _is_commit(repo: Repo, sha: str) -> bool:
    """Whether the object `sha` is a commit in `repo`, asked of the repo's long-lived `git cat-file`."""
    try:
        return bool(repo.odb.info(bytes.fromhex(sha)).type == b"commit")
    except ValueError:  # not in the object database
        return False


def _root_tree(repo: Repo, sha: str, path: str, where: str) -> Tree:
    root: Tree = repo.commit(sha).tree
    if not path:
        return root
    try:
        node = root / path
    except KeyError:
        raise SourceError(
            f"The folder '{path}' does not exist at commit {sha[:12]} in {where}; "
            "check the manifests path in the configuration."
        ) from None
    if not isinstance(node, Tree):
        raise SourceError(f"'{path}' is not a folder at commit {sha[:12]} in {where}.")
    return node


def _list_tree(
    repo: Repo, root: Tree, sha: str, where: str, suffixes: tuple[str, ...] | None, blobs: BlobCache | None
) -> dict[str, bytes]:
    read = blobs.read if blobs is not None else _read_blob
    # One `git ls-tree` lists the whole tree (10k files: ~20 ms, where walking Tree objects took ~100 ms).
    try:
        listing = _run(repo.git, ["ls-tree", "-r", "-z", root.hexsha])
    except GitCommandError as err:
        raise SourceError(f"Could not list the tree at commit {sha[:12]} in {where}: {_git_detail(err)}.") from None
    files: dict[str, bytes] = {}
    for entry in listing.split("\0"):
        meta, _, name = entry.partition("\t")
        mode, kind, blob_id = meta.split(" ") if meta else ("0", "", "")
        if kind == "blob" and _is_wanted(mode, name, suffixes):
            files[name] = read(repo, blob_id)
    return dict(sorted(files.items()))


def _patched_tree(
    repo: Repo, old_root: str, old_files: Mapping[str, bytes], new_root: str, suffixes: tuple[str, ...] | None
) -> dict[str, bytes]:
    """The files of tree `new_root`, from those of `old_root` and one `git diff-tree` between the two: the
    cost follows the change, not the repository (10k files, one changed: ~30 ms → a few)."""
    out = _run(repo.git, ["diff-tree", "-r", "-z", "--no-renames", old_root, new_root])
    changes: dict[str, bytes | None] = {}  # path → its new content; None: no longer a file we read
    fields = out.split("\0")
    for meta, name in zip(fields[0::2], fields[1::2], strict=False):  # ":old-mode new-mode old-id new-id status"
        _, new_mode, _, blob_id, _ = meta.removeprefix(":").split(" ")
        changes[name] = _read_blob(repo, blob_id) if _is_wanted(new_mode, name, suffixes) else None
    if any(content is not None and name not in old_files for name, content in changes.items()):
        return _spliced(old_files, changes)
    files = dict(old_files)  # nothing added: every path stays in its place
    for name, content in changes.items():
        if content is None:
            files.pop(name, None)
        else:
            files[name] = content
    return files


def _spliced(ordered: Mapping[str, bytes], changes: Mapping[str, bytes | None]) -> dict[str, bytes]:
    """`ordered` (sorted by path) with `changes` applied, each path added in its sorted place by bisection:
    sorting all the paths again took ~6 ms at 10k files."""
    names, contents = list(ordered), list(ordered.values())
    for name, content in changes.items():
        at = bisect_left(names, name)
        present = at < len(names) and names[at] == name
        if content is None:
            if present:
                del names[at], contents[at]
        elif present:
            contents[at] = content
        else:
            names.insert(at, name)
            contents.insert(at, content)
    return dict(zip(names, contents, strict=True))


def _is_wanted(mode: str, name: str, suffixes: tuple[str, ...] | None) -> bool:
    """A regular file (not a symlink, submodule or deletion) whose name ends with one of `suffixes`."""
    return int(mode, 8) & _FILE_TYPE_MASK == _REGULAR_FILE and (suffixes is None or name.endswith(suffixes))


def _read_blob(repo: Repo, blob_id: str) -> bytes:
    return bytes(repo.odb.stream(bytes.fromhex(blob_id)).read())


class BlobCache:
    """Blob contents by id, kept between revisions: only the blobs of the latest two reads stay."""

    def __init__(self) -> None:
        self._current: dict[str, bytes] = {}
        self._previous: dict[str, bytes] = {}

    def next_revision(self) -> None:
        self._previous, self._current = self._current, {}

    def read(self, repo: Repo, blob_id: str) -> bytes:
        content = self._current.get(blob_id)
        if content is None:
            content = self._previous.get(blob_id)
            if content is None:
                content = _read_blob(repo, blob_id)
            self._current[blob_id] = content
        return content


def _commit_info(repo: Repo, sha: str) -> Commit:
    c = repo.commit(sha)
    summary = c.summary
    message = summary.decode("utf-8", "replace") if isinstance(summary, bytes) else summary
    return Commit(
        sha=c.hexsha,
        message=message,
        author=f"{c.author.name} <{c.author.email}>",
        committed_at=int(c.committed_date),
    )


def resolve_at(repo_dir: Path, ref: str) -> str:
    """Full commit SHA of `ref` in a local repository (bare or with a working tree)."""
    where = f"the repository {repo_dir}"
    with _open_repo(repo_dir, "repository") as repo:
        return _rev_parse(repo, ref, where)


def read_tree_at(repo_dir: Path, ref: str, path: str, all_files: bool = False) -> dict[str, bytes]:
    """The manifests (or, with `all_files`, every file) under `path` at `ref` of a local repository.

    Reads committed content only: the working tree and the index are ignored.
    """
    folder = _normalize_path(path)
    where = f"the repository {repo_dir}"
    with _open_repo(repo_dir, "repository") as repo:
        suffixes = None if all_files else MANIFEST_SUFFIXES
        return _read_tree(repo, _rev_parse(repo, ref, where), folder, where, suffixes)


class GitSource:
    """One branch of a remote config repository, mirrored into a local bare repository at `cache_dir`."""

    def __init__(
        self, url: str, branch: str, path: str, cache_dir: Path, timeout: float = DEFAULT_TIMEOUT,
        credentials: GitCredentials | None = None,
    ) -> None:  # fmt: skip
        url = url.strip()
        if not url or url.startswith("-"):
            raise SourceError(f"'{redact_url(url)}' is not a repository URL.")
        if _is_local_path(url):
            # Relative paths mean "relative to where the daemon started"; git commands run in the mirror.
            url = os.path.abspath(url)
        self._url = url
        self.display_url = redact_url(url)
        self.branch = branch
        self.path = _normalize_path(path)
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout
        self.credentials = credentials
        self._ref = f"refs/heads/{branch}"
        self._lock = threading.Lock()  # one git operation at a time: the mirror and its open Repo are shared
        # The mirror stays open between calls, and with it its `git cat-file` processes (~3 ms to start each).
        self._repo: Repo | None = None
        self._url_recorded = False  # whether the mirror is known to say which URL filled it (`local_head`)
        self._untidy = False  # fetched since git's housekeeping last ran (`tidy`)
        self._blobs = BlobCache()
        self._last_read: tuple[str, dict[str, bytes]] | None = None  # (tree of `path`, its files)
        self._check_branch_name()

    def __repr__(self) -> str:
        return f"GitSource({self.display_url!r}, branch={self.branch!r}, path={self.path or '.'!r})"

    # -- network ---------------------------------------------------------------------------------------

    def remote_head(self) -> str:
        """Tip SHA of the branch on the remote (`git ls-remote`), without fetching anything."""
        with self._lock:
            git = Git(str(self._ensure_mirror()))
            try:
                out = _run(git, ["ls-remote", self._url, self._ref], timeout=self.timeout, credentials=self.credentials)
            except GitCommandError as err:
                raise self._network_error("reach", err) from None
            except GitCommandNotFound:
                raise SourceError("git is not installed (the `git` command was not found).") from None
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name.strip() == self._ref:
                return sha.strip()
        raise SourceError(f"The branch '{self.branch}' does not exist in {self.display_url}.")

    def fetch(self) -> str:
        """Fetch the branch into the mirror (history rewrites included) and return its tip SHA."""
        with self._lock:
            mirror = self._ensure_mirror()
            git = Git(str(mirror))
            try:
                _run(
                    git,
                    [
                        # Keep what arrives as one pack rather than a loose file per object: on a journaled disk
                        # each new file costs ~1 ms here (10k VS, one-VS commit: fetch 29 → 24 ms, medians). git's
                        # housekeeping (`tidy`) merges the packs once there are gc.autoPackLimit (50) of them.
                        "-c",
                        "fetch.unpackLimit=1",
                        "fetch",
                        "--quiet",
                        "--no-tags",
                        "--no-write-fetch-head",
                        "--no-auto-maintenance",  # `tidy` runs it, off the path from commit to Envoy
                        self._url,
                        f"+{self._ref}:{self._ref}",
                    ],
                    timeout=self.timeout,
                    credentials=self.credentials,
                )
            except GitCommandError as err:
                raise self._network_error("fetch from", err) from None
            except GitCommandNotFound:
                raise SourceError("git is not installed (the `git` command was not found).") from None
            if not self._url_recorded:
                try:
                    _run(git, ["config", "reconciler.url", self.display_url])
                except GitCommandError as err:
                    raise SourceError(f"Could not update the mirror {mirror}: {_git_detail(err)}.") from None
                self._url_recorded = True
            head = self._local_ref(self._open_mirror())
            self._untidy = True
        if head is None:  # fetch succeeded, so the ref exists; only a concurrent meddler gets here
            raise SourceError(f"The branch '{self.branch}' is missing from the mirror {mirror} after a fetch.")
        return head

    # -- local mirror ----------------------------------------------------------------------------------

    def local_head(self) -> str | None:
        """Tip of the branch as last fetched into the mirror; None if this URL/branch was never fetched."""
        if not (self.cache_dir / "HEAD").is_file():
            return None
        git = Git(str(self.cache_dir))
        try:
            recorded = _run(git, ["config", "--get", "reconciler.url"]).strip()
        except (GitCommandError, GitCommandNotFound):
            return None
        if recorded != self.display_url:  # the mirror was filled from another repository
            return None
        with self._mirror() as repo:
            self._url_recorded = True
            return self._local_ref(repo)

    def read_manifests(self, sha: str) -> dict[str, bytes]:
        """Every *.yaml / *.yml file under `path` at commit `sha`, keyed relative to `path`, sorted."""
        with self._mirror() as repo:
            return _read_tree(repo, _rev_parse(repo, sha, self._where), self.path, self._where)

    def read_files(self, sha: str) -> dict[str, bytes]:
        """Every file under `path` at commit `sha`, any type (the secret scan looks at all of them).

        The previous call's files, patched by what changed between the two trees; a whole read when that
        fails. Unchanged files are the very same bytes objects as in the previous result.
        """
        with self._mirror() as repo:
            commit = _rev_parse(repo, sha, self._where)
            root = _root_tree(repo, commit, self.path, self._where)
            last = self._last_read
            files: dict[str, bytes] | None = None
            if last is not None:
                try:
                    files = _patched_tree(repo, last[0], last[1], root.hexsha, None)
                except (GitCommandError, ValueError, OSError) as err:
                    log.warning("source.patch_failed", error=_scrub(str(err), self._url))
            if files is None:
                self._blobs.next_revision()
                files = _list_tree(repo, root, commit, self._where, None, self._blobs)
            self._last_read = (root.hexsha, files)
            return dict(files)

    def commit(self, sha: str) -> Commit:
        with self._mirror() as repo:
            return _commit_info(repo, _rev_parse(repo, sha, self._where))

    def changed_paths(self, old_sha: str, new_sha: str) -> list[str]:
        """Paths (relative to `path`, any file type) added, removed or changed between two commits, sorted."""
        with self._mirror() as repo:
            old = _rev_parse(repo, old_sha, self._where)
            new = _rev_parse(repo, new_sha, self._where)
            try:
                out = _run(repo.git, ["diff-tree", "-r", "-z", "--name-only", "--no-renames", old, new])
            except GitCommandError as err:
                raise SourceError(f"Could not compare {old[:12]} and {new[:12]}: {_git_detail(err)}.") from None
        prefix = self.path + "/" if self.path else ""
        names = (name for name in out.split("\0") if name)
        return sorted(name[len(prefix) :] for name in names if name.startswith(prefix))

    def resolve(self, ref: str) -> str:
        """Full commit SHA of `ref` (branch name, SHA, short SHA, ...) in the mirror."""
        with self._mirror() as repo:
            return _rev_parse(repo, ref, self._where)

    # -- helpers ---------------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"the local mirror of {self.display_url}"

    def _check_branch_name(self) -> None:
        if not self.branch or self.branch.startswith("-"):
            raise SourceError(f"'{self.branch}' is not a valid branch name.")
        try:
            _run(Git(), ["check-ref-format", self._ref])
        except GitCommandError:
            raise SourceError(f"'{self.branch}' is not a valid branch name.") from None
        except GitCommandNotFound:
            raise SourceError("git is not installed (the `git` command was not found).") from None

    def _ensure_mirror(self) -> Path:
        """The bare mirror, created on first use; a folder that holds something else is refused."""
        mirror = self.cache_dir
        if (mirror / "HEAD").is_file() and (mirror / "objects").is_dir():
            return mirror
        if mirror.exists() and (not mirror.is_dir() or any(mirror.iterdir())):
            raise SourceError(f"The cache folder {mirror} exists but is not a git mirror; remove it or choose another.")
        if self._repo is not None:  # the mirror it had open is gone
            self._repo.close()
            self._repo = None
        self._url_recorded = False
        try:
            mirror.mkdir(parents=True, exist_ok=True)
            Repo.init(str(mirror), bare=True).close()
        except OSError as err:
            raise SourceError(f"Could not create the mirror {mirror}: {err.strerror or err}.") from None
        except GitCommandError as err:
            raise SourceError(f"Could not create the mirror {mirror}: {_git_detail(err)}.") from None
        return mirror

    @contextmanager
    def _mirror(self) -> Iterator[Repo]:
        with self._lock:
            if not (self.cache_dir / "HEAD").is_file():
                raise SourceError(
                    f"Nothing has been fetched from {self.display_url} yet (no mirror at {self.cache_dir})."
                )
            yield self._open_mirror()

    def _open_mirror(self) -> Repo:
        if self._repo is None:
            self._repo = _open_repo(self.cache_dir, "mirror")
        return self._repo

    def tidy(self) -> None:
        """Git's own housekeeping of the mirror (`git maintenance run --auto`: packs loose objects and packs once
        there are many), which `fetch` leaves out so as not to delay a revision by it: call this once the
        revision is on its way. Does nothing when nothing was fetched since the last call; git decides itself
        whether there is anything to do (and does the heavy part in the background)."""
        with self._lock:
            if not self._untidy:
                return
            self._untidy = False
            try:
                _run(Git(str(self.cache_dir)), ["maintenance", "run", "--auto", "--quiet"], timeout=self.timeout)
            except GitCommandError as err:
                detail = _git_detail(err)
                raise SourceError(f"Git's housekeeping of the mirror {self.cache_dir} failed: {detail}.") from None

    def close(self) -> None:
        """Stop the mirror's `git cat-file` processes; a later call opens the mirror again."""
        with self._lock:
            if self._repo is not None:
                self._repo.close()
                self._repo = None

    def _local_ref(self, repo: Repo) -> str | None:
        """The commit the branch names in the mirror, read from the ref files rather than by a git process."""
        try:
            return _rev_parse(repo, SymbolicReference.dereference_recursive(repo, self._ref), self._where)
        except (ValueError, OSError, SourceError):
            return None

    def _network_error(self, verb: str, err: GitCommandError) -> SourceError:
        detail = _git_detail(err, self._url)
        if detail == "git did not finish in time":
            detail = f"no answer within {self.timeout:g} s"
        if "couldn't find remote ref" in detail:
            return SourceError(f"The branch '{self.branch}' does not exist in {self.display_url}.")
        return SourceError(
            f"Could not {verb} the config repository {self.display_url} (branch '{self.branch}'): {detail}. "
            "Check the URL, the network and the credentials."
        )
