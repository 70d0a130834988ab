"""`reconciler validate`: exit codes, the three output formats, the secret scan and certificate-file checks."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.cli.output import print_text
from reconciler.diagnostics import Finding, Location, Severity
from reconciler.pipeline import build

TEMPLATE = Path(__file__).parents[2] / "repo-template"
BROKEN_ROUTE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: edge}
spec:
  hosts: [shop.example.com]
  gateways: [public]
  http:
  - match: [{uri: {regex: "(unclosed"}}]
    route: [{destination: {host: shop.internal, subset: blue}}]
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(TEMPLATE, tmp_path / "repo")
    return tmp_path / "repo"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def test_the_template_is_valid_and_its_ci_files_are_not_manifests(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (repo / ".github" / "workflows" / "gateway-config.yml").exists()
    code, out = run(capsys, str(repo))
    assert code == 0, out
    assert "0 error(s), 0 warning(s)" in out
    assert build({".github/workflows/ci.yml": b"name: ci\non: push\n"}).findings == ()


def test_exit_codes(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "routes" / "broken.yaml").write_text(BROKEN_ROUTE)
    assert run(capsys, str(repo))[0] == 1
    assert main(["validate", str(tmp_path / "missing")]) == 2


def test_json_output_follows_the_contract(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "routes" / "broken.yaml").write_text(BROKEN_ROUTE)
    code, out = run(capsys, str(repo), "--format", "json")
    payload = json.loads(out)
    assert code == 1 and payload["valid"] is False
    (finding,) = [f for f in payload["findings"] if f["code"] == "invalid-regex"]
    assert finding == {
        "severity": "error",
        "code": "invalid-regex",
        "message": finding["message"],
        "resource": "VirtualService edge/broken",
        "file": "routes/broken.yaml",
        "line": 8,
        "column": 20,
    }


def test_github_output_is_workflow_annotations(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "routes" / "broken.yaml").write_text(BROKEN_ROUTE)
    _, out = run(capsys, str(repo), "--format", "github")
    (line,) = [x for x in out.splitlines() if "invalid-regex" in x]
    assert line.startswith("::error file=routes/broken.yaml,line=8,col=20,title=VirtualService edge/broken::")


def test_text_output_groups_by_file_lists_related_places_and_colors_a_tty() -> None:
    finding = Finding(
        Severity.ERROR, "x-code", "message", Location("a.yaml", 3, 4), "Gateway default/gw", (Location("b.yaml", 1, 2),)
    )

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain, terminal = io.StringIO(), Terminal()
    print_text([finding], 1, plain)
    print_text([finding], 1, terminal)
    assert plain.getvalue().splitlines()[:3] == [
        "a.yaml",
        "       3:4  error x-code [Gateway default/gw]: message",
        "            see also b.yaml:1:2",
    ]
    assert "\033[31merror\033[0m" in terminal.getvalue()


def test_a_committed_private_key_fails_validation(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "certs").mkdir()
    (repo / "certs" / "shop.key").write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    code, out = run(capsys, str(repo))
    assert code == 1
    assert "certs/shop.key" in out and "private-key-committed" in out


def test_certificate_files_are_warned_about_or_required_or_skipped(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = repo / "gateways" / "public.yaml"
    gateway.write_text(
        gateway.read_text()
        + """    - port: {number: 8443, name: https, protocol: HTTPS}
      hosts: ["*.example.com"]
      tls: {mode: SIMPLE, serverCertificate: /nonexistent/shop.pem, privateKey: /nonexistent/shop.key}
"""
    )
    code, out = run(capsys, str(repo))
    assert code == 0 and out.count("certificate-file-unreadable") == 2 and "warning certificate" in out
    code, out = run(capsys, str(repo), "--check-files", "error")
    assert code == 1 and "error certificate-file-unreadable" in out
    code, out = run(capsys, str(repo), "--check-files", "skip")
    assert code == 0 and "certificate-file-unreadable" not in out
