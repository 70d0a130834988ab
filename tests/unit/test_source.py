"""Tests for reconciler.source against real git repositories.

Each test gets a bare "remote" repository in tmp_path, addressed by a file:// URL, and a working clone that
commits and pushes to it. Git runs with an isolated configuration (no global or system config), a fixed
identity and no proxies; the only network use is loopback.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from reconciler.manifests.loader import MANIFEST_SUFFIXES as LOADER_SUFFIXES
from reconciler.source import Commit, GitSource, SourceError, read_tree_at, redact_url, resolve_at
from reconciler.source import git as git_module
from reconciler.source.git import MANIFEST_SUFFIXES

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Ada Tester")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "ada@example.test")
    for var in (*_PROXY_VARS, "GIT_ASKPASS", "SSH_ASKPASS", "GIT_TERMINAL_PROMPT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


class Upstream:
    """A bare remote and a working clone that commits and pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(root, "init", "--quiet", "--initial-branch=main", str(self.work))
        git(self.work, "remote", "add", "origin", self.url)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, files: Mapping[str, str | None], message: str = "change") -> str:
        """Write (or, for None, delete) files, commit everything and return the new SHA."""
        for name, content in files.items():
            target = self.work / name
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        git(self.work, "add", "--all")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        return git(self.work, "rev-parse", "HEAD")

    def push(self, force: bool = False) -> None:
        git(self.work, "push", "--quiet", *(["--force"] if force else []), "origin", "main")

    def commit_and_push(self, files: Mapping[str, str | None], message: str = "change") -> str:
        sha = self.commit(files, message)
        self.push()
        return sha


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path)


def source_for(upstream: Upstream, tmp_path: Path, path: str = ".", cache: str = "mirror") -> GitSource:
    return GitSource(upstream.url, "main", path, tmp_path / "state" / cache)


# -- fetch and remote_head -------------------------------------------------------------------------------


def test_fetch_follows_new_commits(upstream: Upstream, tmp_path: Path) -> None:
    first = upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    source = source_for(upstream, tmp_path)
    assert source.local_head() is None
    assert source.fetch() == first
    assert source.local_head() == first

    second = upstream.commit_and_push({"gw.yaml": "a: 2\n"})
    assert source.fetch() == second
    assert source.local_head() == second
    assert source.read_manifests(second) == {"gw.yaml": b"a: 2\n"}
    assert source.read_manifests(first) == {"gw.yaml": b"a: 1\n"}


def test_housekeeping_waits_for_tidy(upstream: Upstream, tmp_path: Path) -> None:
    """A fetch leaves git's housekeeping out (it would delay the revision); `tidy` runs it afterwards."""
    upstream.commit_and_push({"gw.yaml": "a: 0\n"})
    source = source_for(upstream, tmp_path)
    source.fetch()
    mirror = source.cache_dir
    # every fetch keeps a pack of its own, and more than one pack is housekeeping's cue to repack (in the foreground)
    for key, value in (("gc.autoPackLimit", "1"), ("gc.autoDetach", "false")):
        git(mirror, "config", key, value)

    def packs() -> int:
        return len(list((mirror / "objects" / "pack").glob("*.pack")))

    for n in (1, 2):
        upstream.commit_and_push({"gw.yaml": f"a: {n}\n"})
        source.fetch()
    assert packs() == 3  # one per fetch, however few objects it brought
    assert not list((mirror / "objects").glob("??/*"))  # and no loose objects
    source.tidy()
    assert packs() == 1
    assert source.read_files(source.local_head() or "") == {"gw.yaml": b"a: 2\n"}
    upstream.commit_and_push({"gw.yaml": "a: 3\n"})
    source.fetch()
    source.tidy()
    assert packs() == 1  # it ran again after a fetch; with nothing fetched since, it does not (no process started)


def test_remote_head_changes_after_a_push(upstream: Upstream, tmp_path: Path) -> None:
    first = upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    source = source_for(upstream, tmp_path)
    assert source.remote_head() == first
    second = upstream.commit_and_push({"gw.yaml": "a: 2\n"})
    assert source.remote_head() == second
    assert source.local_head() is None  # ls-remote fetches nothing


def test_missing_branch(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    source = GitSource(upstream.url, "release", ".", tmp_path / "mirror")
    for call in (source.remote_head, source.fetch):
        with pytest.raises(SourceError, match=r"branch 'release' does not exist in file://"):
            call()


def test_force_push_fetches_the_rewritten_tip(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit_and_push({"gw.yaml": "a: 1\n"}, "base")
    bad = upstream.commit_and_push({"gw.yaml": "a: bad\n"}, "bad")
    source = source_for(upstream, tmp_path)
    assert source.fetch() == bad

    git(upstream.work, "reset", "--quiet", "--hard", "HEAD~1")
    rewritten = upstream.commit({"gw.yaml": "a: good\n"}, "good")
    upstream.push(force=True)

    assert source.remote_head() == rewritten
    assert source.fetch() == rewritten
    assert source.local_head() == rewritten
    assert source.read_manifests(rewritten) == {"gw.yaml": b"a: good\n"}
    assert source.commit(bad).message == "bad"  # the old tip stays readable in the mirror


def test_mirror_survives_a_restart(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    source_for(upstream, tmp_path).fetch()

    # A new daemon process: same cache folder, no fetch, and the remote is gone.
    upstream.bare.rename(tmp_path / "gone.git")
    restarted = source_for(upstream, tmp_path)
    assert restarted.local_head() == sha
    assert restarted.read_manifests(sha) == {"gw.yaml": b"a: 1\n"}
    with pytest.raises(SourceError):
        restarted.fetch()
    assert restarted.local_head() == sha


def test_mirror_filled_from_another_repository_has_no_local_head(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    source_for(upstream, tmp_path).fetch()
    (tmp_path / "other").mkdir()
    other = Upstream(tmp_path / "other")
    sha = other.commit_and_push({"x.yaml": "b: 1\n"})
    moved = GitSource(other.url, "main", ".", tmp_path / "state" / "mirror")
    assert moved.local_head() is None
    assert moved.fetch() == sha
    assert moved.local_head() == sha


def test_cache_folder_with_foreign_content_is_refused(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "notes.txt").write_text("mine")
    source = GitSource(upstream.url, "main", ".", cache)
    assert source.local_head() is None
    with pytest.raises(SourceError, match="is not a git mirror"):
        source.fetch()


def test_relative_local_path_url(upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    monkeypatch.chdir(tmp_path)
    source = GitSource("remote.git", "main", ".", tmp_path / "mirror")
    assert source.fetch() == sha


# -- reading manifests -------------------------------------------------------------------------------------

TREE = {
    "README.md": "# config\n",
    "top.yaml": "top: 1\n",
    "gateways/public.yaml": "kind: Gateway\n",
    "gateways/internal.yml": "kind: Gateway\n",
    "gateways/notes.txt": "not a manifest\n",
    "gateways/yaml": "no suffix\n",
    "gateways/routes/b.yaml": "kind: VirtualService\n",
    "gateways/routes/a.yaml": "kind: VirtualService\n",
    "gateways/routes/deeper/c.yml": "kind: ServiceEntry\n",
    "gateways/routes.yaml.bak": "backup\n",
    "other/x.yaml": "other: 1\n",
}


def test_read_manifests_restricted_to_a_subfolder(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit_and_push(TREE)
    source = source_for(upstream, tmp_path, path="gateways")
    source.fetch()
    files = source.read_manifests(sha)
    assert files == {
        "internal.yml": b"kind: Gateway\n",
        "public.yaml": b"kind: Gateway\n",
        "routes/a.yaml": b"kind: VirtualService\n",
        "routes/b.yaml": b"kind: VirtualService\n",
        "routes/deeper/c.yml": b"kind: ServiceEntry\n",
    }
    assert list(files) == sorted(files)


def test_path_spellings(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit_and_push(TREE)
    source_for(upstream, tmp_path).fetch()
    everything = [
        "gateways/internal.yml",
        "gateways/public.yaml",
        "gateways/routes/a.yaml",
        "gateways/routes/b.yaml",
        "gateways/routes/deeper/c.yml",
        "other/x.yaml",
        "top.yaml",
    ]
    routes = ["a.yaml", "b.yaml", "deeper/c.yml"]
    spellings = {".": everything, "": everything, "./": everything, "gateways/..": everything}
    spellings |= {"./gateways/routes/": routes, "gateways/routes": routes, "gateways//routes": routes}
    for path, expected in spellings.items():
        # Same mirror, another manifests folder: no second fetch needed.
        assert list(source_for(upstream, tmp_path, path=path).read_manifests(sha)) == expected, path


def test_symlinks_and_submodules_are_skipped(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit({"m/real.yaml": "r: 1\n"})
    (upstream.work / "m" / "link.yaml").symlink_to("real.yaml")
    (upstream.work / "m" / "linkdir").symlink_to("/etc")
    git(upstream.work, "add", "--all")
    some_commit = git(upstream.work, "rev-parse", "HEAD")
    # A gitlink (what a submodule is in a tree) whose name looks like a manifest, and one that is a folder.
    for name in ("m/sub.yaml", "m/sub"):
        git(upstream.work, "update-index", "--add", "--cacheinfo", f"160000,{some_commit},{name}")
    git(upstream.work, "commit", "--quiet", "-m", "links")
    upstream.push()
    sha = git(upstream.work, "rev-parse", "HEAD")
    assert "120000" in git(upstream.work, "ls-tree", "-r", sha)

    source = source_for(upstream, tmp_path, path="m")
    source.fetch()
    assert source.read_manifests(sha) == {"real.yaml": b"r: 1\n"}


def test_executable_and_binary_content_is_read_verbatim(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit({})
    raw = b"a: \xe2\x82\xac\r\n\x00tail"
    (upstream.work / "bin.yaml").write_bytes(raw)
    (upstream.work / "bin.yaml").chmod(0o755)
    sha = upstream.commit({}, "binary")
    upstream.push()
    source = source_for(upstream, tmp_path)
    source.fetch()
    assert source.read_manifests(sha) == {"bin.yaml": raw}


def test_missing_path_and_file_path_are_errors(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit_and_push(TREE)
    missing = source_for(upstream, tmp_path, path="nowhere/here")
    missing.fetch()
    with pytest.raises(SourceError, match=rf"folder 'nowhere/here' does not exist at commit {sha[:12]}"):
        missing.read_manifests(sha)
    a_file = source_for(upstream, tmp_path, path="top.yaml")
    with pytest.raises(SourceError, match=r"'top\.yaml' is not a folder"):
        a_file.read_manifests(sha)


def test_path_appears_in_a_later_commit(upstream: Upstream, tmp_path: Path) -> None:
    before = upstream.commit_and_push({"top.yaml": "a: 1\n"})
    after = upstream.commit_and_push({"gateways/g.yaml": "g: 1\n"})
    source = source_for(upstream, tmp_path, path="gateways")
    source.fetch()
    assert source.read_manifests(after) == {"g.yaml": b"g: 1\n"}
    with pytest.raises(SourceError, match="'gateways' does not exist"):
        source.read_manifests(before)


def test_empty_folder_tree_gives_no_files(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit_and_push({"docs/readme.md": "x\n"})
    source = source_for(upstream, tmp_path, path="docs")
    source.fetch()
    assert source.read_manifests(sha) == {}


def test_unknown_revision_is_an_error(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    source = source_for(upstream, tmp_path)
    source.fetch()
    for bad in ("0" * 40, "deadbeef", "no-such-branch", "--all", ""):
        for call in (source.read_manifests, source.commit, source.resolve):
            with pytest.raises(SourceError, match=r"is not a (commit|git revision)"):
                call(bad)


def test_a_tree_sha_is_not_a_commit(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    source = source_for(upstream, tmp_path)
    source.fetch()
    tree = git(upstream.work, "rev-parse", f"{sha}^{{tree}}")
    with pytest.raises(SourceError, match="is not a commit in the local mirror of file://"):
        source.read_manifests(tree)


def test_reading_before_any_fetch_is_an_error(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    with pytest.raises(SourceError, match="Nothing has been fetched"):
        source_for(upstream, tmp_path).read_manifests(sha)


def test_many_files_are_read_quickly(upstream: Upstream, tmp_path: Path) -> None:
    files: dict[str, str | None] = {f"d{i % 20}/f{i}.yaml": f"n: {i}\n" for i in range(400)}
    sha = upstream.commit_and_push(files)
    source = source_for(upstream, tmp_path)
    source.fetch()
    got = source.read_manifests(sha)
    assert len(got) == 400
    assert got["d7/f387.yaml"] == b"n: 387\n"


def test_read_files_reads_only_the_blobs_a_revision_changed(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = upstream.commit_and_push({f"d{i % 3}/f{i}.yaml": f"n: {i}\n" for i in range(30)})
    source = source_for(upstream, tmp_path)
    source.fetch()
    assert len(source.read_files(first)) == 30
    read: list[bytes] = []
    original = git_module._read_blob
    monkeypatch.setattr(git_module, "_read_blob", lambda repo, blob: read.append(original(repo, blob)) or read[-1])
    second = upstream.commit_and_push({"d1/f4.yaml": "n: changed\n", "d2/f5.yaml": None, "new.yaml": "n: new\n"})
    source.fetch()
    files = source.read_files(second)
    assert sorted(read) == [b"n: changed\n", b"n: new\n"]  # the unchanged 28 files came from memory
    assert len(files) == 30 and files["d1/f4.yaml"] == b"n: changed\n" and "d2/f5.yaml" not in files
    assert files["d0/f3.yaml"] == b"n: 3\n"
    assert source.read_files(first)["d1/f4.yaml"] == b"n: 4\n"  # back to a revision read before: its blob


def test_read_files_follows_every_kind_of_change_like_a_fresh_read(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_files patches its previous result with the diff between the trees: after adds, edits, deletions,
    a file turned into a symlink, an edit outside `path` and a jump back, it equals a fresh source's read."""
    listings: list[str] = []
    original = git_module._list_tree
    monkeypatch.setattr(
        git_module, "_list_tree", lambda repo, root, *a: listings.append(root.hexsha) or original(repo, root, *a)
    )
    source = source_for(upstream, tmp_path, path="m")
    steps: list[Callable[[], str]] = [
        lambda: upstream.commit_and_push({"m/a.yaml": "a: 1\n", "m/d/b.yaml": "b: 1\n", "m/notes.txt": "x\n"}),
        lambda: upstream.commit_and_push({"m/a.yaml": "a: 2\n", "m/d/c.yml": "c: 1\n", "m/notes.txt": None}),
        lambda: upstream.commit_and_push({"other/z.yaml": "z: 1\n"}),  # nothing under `path` changed
        lambda: _symlink_and_push(upstream, "m/d/b.yaml", "../a.yaml"),
        lambda: upstream.commit_and_push({"m/d/b.yaml": None, "m/e/f.yaml": "f: 1\n"}),
        # files that sort first, between others and last, in one commit
        lambda: upstream.commit_and_push({"m/0.yaml": "0: 1\n", "m/b.yaml": "b: 2\n", "m/d/a.yaml": "a: 3\n"}),
    ]
    shas = []
    for step in steps:
        shas.append(step())
        source.fetch()
        fresh = source_for(upstream, tmp_path, path="m", cache=f"fresh-{len(shas)}")
        fresh.fetch()
        assert source.read_files(shas[-1]) == fresh.read_files(shas[-1])
        assert list(source.read_files(shas[-1])) == sorted(fresh.read_files(shas[-1]))
    assert source.read_files(shas[0]) == {"a.yaml": b"a: 1\n", "d/b.yaml": b"b: 1\n", "notes.txt": b"x\n"}
    assert len(listings) == 1 + len(steps)  # the source listed its first tree whole, each fresh source one


def _symlink_and_push(upstream: Upstream, name: str, target: str) -> str:
    link = upstream.work / name
    link.unlink()
    link.symlink_to(target)
    return upstream.commit_and_push({})


# -- commit, resolve, changed_paths -----------------------------------------------------------------------


def test_commit_metadata(upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0200")
    sha = upstream.commit_and_push({"gw.yaml": "a: 1\n"}, "Route /api to v2\n\nLonger explanation.")
    source = source_for(upstream, tmp_path)
    source.fetch()
    assert source.commit(sha) == Commit(
        sha=sha, message="Route /api to v2", author="Ada Tester <ada@example.test>", committed_at=1700000000
    )
    assert source.commit(sha[:8]).sha == sha


def test_resolve(upstream: Upstream, tmp_path: Path) -> None:
    first = upstream.commit_and_push({"gw.yaml": "a: 1\n"})
    second = upstream.commit_and_push({"gw.yaml": "a: 2\n"})
    source = source_for(upstream, tmp_path)
    source.fetch()
    assert source.resolve("main") == second
    assert source.resolve("refs/heads/main") == second
    assert source.resolve("main~1") == first
    assert source.resolve(first[:10]) == first


def test_changed_paths(upstream: Upstream, tmp_path: Path) -> None:
    old = upstream.commit_and_push(
        {
            "gateways/keep.yaml": "k: 1\n",
            "gateways/edit.yaml": "e: 1\n",
            "gateways/gone.yaml": "g: 1\n",
            "gateways/old-name.yaml": "r: 1\n",
            "outside.yaml": "o: 1\n",
        }
    )
    upstream.commit_and_push({"gateways/edit.yaml": "e: 2\n", "outside.yaml": "o: 2\n"})
    (upstream.work / "gateways" / "sub").mkdir()
    git(upstream.work, "mv", "gateways/old-name.yaml", "gateways/sub/new-name.yaml")
    new = upstream.commit_and_push(
        {"gateways/gone.yaml": None, "gateways/sub/added.yml": "a: 1\n", "gateways/notes.txt": "n\n"}
    )
    source = source_for(upstream, tmp_path, path="gateways")
    source.fetch()
    assert source.changed_paths(old, new) == [
        "edit.yaml",
        "gone.yaml",
        "notes.txt",
        "old-name.yaml",
        "sub/added.yml",
        "sub/new-name.yaml",
    ]
    assert source.changed_paths(new, old) == source.changed_paths(old, new)
    assert source.changed_paths(new, new) == []
    assert source_for(upstream, tmp_path, path=".").changed_paths(old, f"{old}~0") == []
    with pytest.raises(SourceError, match="not a commit"):
        source.changed_paths("0" * 40, new)


# -- errors that must not leak credentials ------------------------------------------------------------------


def test_unreachable_file_url(tmp_path: Path) -> None:
    source = GitSource("file:///nonexistent/repo.git", "main", ".", tmp_path / "mirror")
    for call in (source.remote_head, source.fetch):
        with pytest.raises(SourceError) as caught:
            call()
        message = str(caught.value)
        assert "file:///nonexistent/repo.git" in message
        assert "does not appear to be a git repository" in message
        assert "Traceback" not in message and "cmdline" not in message
    assert source.local_head() is None


def test_unreachable_https_url_does_not_leak_the_token(tmp_path: Path) -> None:
    token = "ghp_s3cr3tT0ken"
    source = GitSource(f"https://deploy:{token}@127.0.0.1:9/org/repo.git", "main", ".", tmp_path / "m")
    assert token not in repr(source)
    for call in (source.remote_head, source.fetch):
        with pytest.raises(SourceError) as caught:
            call()
        message = str(caught.value)
        assert "https://127.0.0.1:9/org/repo.git" in message
        assert token not in message
        assert "deploy" not in message
    assert token not in (tmp_path / "m" / "config").read_text()


class _AuthRequired(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def auth_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthRequired)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_missing_credentials_fail_instead_of_prompting(tmp_path: Path, auth_server: str) -> None:
    source = GitSource(f"http://{auth_server}/repo.git", "main", ".", tmp_path / "m", timeout=10)
    with pytest.raises(SourceError, match="terminal prompts disabled"):
        source.remote_head()


def test_rejected_credentials_do_not_leak(tmp_path: Path, auth_server: str) -> None:
    token = "tok%2Fen-with-escapes"
    source = GitSource(f"http://x-token:{token}@{auth_server}/repo.git", "main", ".", tmp_path / "m")
    with pytest.raises(SourceError) as caught:
        source.fetch()
    message = str(caught.value)
    assert f"http://{auth_server}/repo.git" in message
    assert "tok" not in message and "tok/en" not in message and "x-token" not in message


def test_a_silent_server_times_out(tmp_path: Path) -> None:
    # Accepts TCP connections (the kernel does, from the backlog) and never says a word.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        source = GitSource(f"https://u:p4ssw0rd@127.0.0.1:{port}/r.git", "main", ".", tmp_path / "m", timeout=0.5)
        with pytest.raises(SourceError, match=r"no answer within 0\.5 s") as caught:
            source.remote_head()
    assert "p4ssw0rd" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@example.com/a.git", "https://example.com/a.git"),
        ("https://tok@example.com:8443/a.git", "https://example.com:8443/a.git"),
        ("https://example.com/a@b.git", "https://example.com/a@b.git"),
        ("ssh://git@example.com/a.git", "ssh://example.com/a.git"),
        ("git@example.com:org/a.git", "git@example.com:org/a.git"),
        ("file:///srv/a@b/repo.git", "file:///srv/a@b/repo.git"),
        ("/srv/repo.git", "/srv/repo.git"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# -- construction ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["", "-x", "a..b", "with space", "end.lock", "a~1"])
def test_invalid_branch_names_are_refused(tmp_path: Path, branch: str) -> None:
    with pytest.raises(SourceError, match="not a valid branch name"):
        GitSource("file:///srv/repo.git", branch, ".", tmp_path / "m")


@pytest.mark.parametrize("path", ["/etc", "..", "../up", "a/../../up"])
def test_paths_outside_the_repository_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(SourceError, match="must be a folder inside the repository"):
        GitSource("file:///srv/repo.git", "main", path, tmp_path / "m")


def test_option_like_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not a repository URL"):
        GitSource("--upload-pack=touch /tmp/pwned", "main", ".", tmp_path / "m")


# -- a plain local repository (reconciler plan --repo DIR --base REF --head REF) ---------------------------


def test_read_tree_at_a_local_work_repository(upstream: Upstream) -> None:
    base = upstream.commit(TREE, "base")
    head = upstream.commit({"gateways/public.yaml": "kind: Gateway # v2\n", "gateways/internal.yml": None})
    git(upstream.work, "tag", "v1", base)
    # Uncommitted edits in the working tree and the index are not part of any revision.
    (upstream.work / "gateways" / "public.yaml").write_text("dirty\n")
    (upstream.work / "gateways" / "untracked.yaml").write_text("u\n")
    git(upstream.work, "add", "gateways/untracked.yaml")

    at_head = read_tree_at(upstream.work, "HEAD", "gateways")
    assert at_head["public.yaml"] == b"kind: Gateway # v2\n"
    assert "internal.yml" not in at_head and "untracked.yaml" not in at_head
    at_base = read_tree_at(upstream.work, "v1", "gateways")
    assert at_base == read_tree_at(upstream.work, "main~1", "./gateways/")
    assert list(at_base) == [
        "internal.yml",
        "public.yaml",
        "routes/a.yaml",
        "routes/b.yaml",
        "routes/deeper/c.yml",
    ]
    assert resolve_at(upstream.work, "main") == head
    assert resolve_at(upstream.work, "v1") == base


def test_read_tree_at_errors(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit(TREE)
    with pytest.raises(SourceError, match="'nope' is not a commit in the repository"):
        read_tree_at(upstream.work, "nope", ".")
    with pytest.raises(SourceError, match="'absent' does not exist"):
        read_tree_at(upstream.work, "HEAD", "absent")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(SourceError, match="is not a git repository"):
        read_tree_at(plain, "HEAD", ".")
    with pytest.raises(SourceError, match="does not exist"):
        read_tree_at(tmp_path / "missing", "HEAD", ".")


def test_manifest_suffixes_match_the_loader() -> None:
    assert tuple(MANIFEST_SUFFIXES) == tuple(LOADER_SUFFIXES)
