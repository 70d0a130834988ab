"""Git credentials from files: a token reaches a real authenticated git HTTP server and nothing else sees it."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler.source import SourceError
from reconciler.source.git import GitCredentials, GitSource
from tests.support import GitRemote

TOKEN = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"


class _SmartHttp(BaseHTTPRequestHandler):
    """git's smart HTTP protocol through `git http-backend`, behind HTTP Basic authentication."""

    server: GitHttpServer

    def _serve(self) -> None:
        expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(self.server.root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
            "QUERY_STRING": query, "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": "x-access-token",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }  # fmt: skip
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=True)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:
        return


class GitHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _SmartHttp)
        self.root = root
        self.authorizations: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def git_http(remote: GitRemote) -> Iterator[GitHttpServer]:
    server = GitHttpServer(remote.bare.parent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_token_from_a_file_reaches_the_server_and_nowhere_else(
    tmp_path: Path, remote: GitRemote, git_http: GitHttpServer
) -> None:
    remote.write("a.yaml", "kind: Nothing\n")
    sha = remote.commit_and_push("first")
    url = f"{git_http.url}/{remote.bare.name}"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")

    without = GitSource(url, "main", ".", tmp_path / "mirror-a", timeout=20)
    with pytest.raises(SourceError) as refused:
        without.remote_head()
    assert TOKEN not in str(refused.value)

    source = GitSource(
        url, "main", ".", tmp_path / "mirror-b", timeout=20, credentials=GitCredentials(token_file=str(token_file))
    )
    assert source.remote_head() == sha
    assert source.fetch() == sha
    assert source.read_manifests(sha) == {"a.yaml": b"kind: Nothing\n"}
    assert any(a.startswith("Basic ") for a in git_http.authorizations)
    mirror_files = b"".join(p.read_bytes() for p in (tmp_path / "mirror-b").rglob("*") if p.is_file())
    assert TOKEN.encode() not in mirror_files  # not in the mirror's config, refs or logs
    assert TOKEN not in repr(source) and TOKEN not in source.display_url


def test_ssh_key_and_pinned_known_hosts_reach_ssh() -> None:
    """No SSH server runs here, so this checks the command git is told to use for ssh:// remotes."""
    env = GitCredentials(ssh_key_file="/etc/reconciler/deploy key", known_hosts_file="/etc/reconciler/known_hosts")
    command = env.environment()["GIT_SSH_COMMAND"]
    assert command == (
        "ssh -i '/etc/reconciler/deploy key' -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o UserKnownHostsFile=/etc/reconciler/known_hosts -o StrictHostKeyChecking=yes"
    )
