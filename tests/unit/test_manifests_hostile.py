"""Hostile and broken files: each gives a clean finding, in bounded time and memory, and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.pipeline import build

VALID_VS = b"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ok}
spec:
  hosts: [a.example.com]
  http: [{route: [{destination: {host: a.example.com}}]}]
"""
BILLION_LAUGHS = b"""a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
HOSTILE: dict[str, tuple[bytes, str]] = {
    "malformed.yaml": (b"apiVersion: v1\nkind: [Gateway\nmetadata: {}\n", "yaml-syntax"),
    "bomb.yaml": (BILLION_LAUGHS, "yaml-syntax"),
    "recursive-alias.yaml": (b"a: &a [*a]\n", "yaml-syntax"),
    "deep.yaml": (b"a: " + b"[" * 500 + b"]" * 500 + b"\n", "yaml-syntax"),
    "deep-block.yaml": (b"".join(b" " * i + b"k:\n" for i in range(400)), "yaml-syntax"),
    "latin1.yaml": (VALID_VS.replace(b"ok", b"caf\xe9"), "not-utf8"),
    "binary.yaml": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not-text"),
    "utf16.yaml": (VALID_VS.decode().encode("utf-16"), "not-text"),
    "python-tag.yaml": (b'a: !!python/object/apply:os.system ["touch /tmp/pwned-by-yaml"]\n', "yaml-syntax"),
    "scalar.yaml": (b"just a string\n", "not-a-resource"),
    "list.yaml": (b"- apiVersion: v1\n", "not-a-resource"),
    "duplicate-key.yaml": (VALID_VS.replace(b"metadata:", b"kind: Gateway\nmetadata:"), "yaml-syntax"),
    "huge-int.yaml": (
        VALID_VS.replace(
            b"http: [",
            b"http: [{retries: {attempts: 99999999999999999999}, route: [{destination: {host: a.example.com}}]}, ",
        ),
        "value-out-of-range",
    ),
    "surrogate.yaml": (VALID_VS.replace(b"a.example.com]", b'"\\ud800.example.com"]'), "yaml-syntax"),
    "infinite.yaml": (
        VALID_VS.replace(
            b"http: [",
            b"http: [{mirrorPercentage: {value: .inf}, route: [{destination: {host: a.example.com}}]}, ",
        ),
        "not-a-number",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_file_gets_a_clean_finding(name: str) -> None:
    content, code = HOSTILE[name]
    started = time.monotonic()
    result = build({name: content})
    assert time.monotonic() - started < 5
    assert code in {f.code for f in result.findings if f.is_error}, [str(f) for f in result.findings]
    assert all(f.location.file == name and f.location.line >= 1 for f in result.findings)


def test_a_python_tag_is_never_executed() -> None:
    marker = Path("/tmp/pwned-by-yaml")
    marker.unlink(missing_ok=True)
    build({"tag.yaml": HOSTILE["python-tag.yaml"][0]})
    assert not marker.exists()


def test_empty_and_comment_only_files_are_fine() -> None:
    result = build({"empty.yaml": b"", "comments.yaml": b"# nothing\n---\n---\n"})
    assert result.findings == ()


def test_a_broken_file_does_not_hide_the_others() -> None:
    result = build({"bad.yaml": b"{", "good.yaml": VALID_VS})
    assert [r.name for r in result.manifests.resources] == ["ok"]
    assert {f.location.file for f in result.findings if f.code == "yaml-syntax"} == {"bad.yaml"}


def test_many_documents_in_one_file_stay_fast() -> None:
    documents = b"---\n".join(VALID_VS.replace(b"name: ok", f"name: vs-{i}".encode()) for i in range(2000))
    started = time.monotonic()
    result = build({"many.yaml": documents})
    assert len(result.manifests.resources) == 2000
    assert time.monotonic() - started < 20


MEASURED_CLI = (
    "import resource, sys\n"
    "from reconciler.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "sys.stderr.write(f'maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n"
    "sys.exit(code)\n"
)


def test_the_cli_reports_every_hostile_file_without_a_traceback(tmp_path: Path) -> None:
    for name, (content, _) in HOSTILE.items():
        (tmp_path / name).write_bytes(content)
    with (tmp_path / "fifty-megabytes.yaml").open("wb") as big:
        line = b"# " + b"x" * 1021 + b"\n"
        for _ in range(50 * 1024):
            big.write(line)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", MEASURED_CLI, "validate", str(tmp_path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    codes = {(f["file"], f["code"]) for f in report["findings"]}
    for name, (_, code) in HOSTILE.items():
        assert (name, code) in codes
    assert ("fifty-megabytes.yaml", "file-too-large") in codes
    assert elapsed < 60
    maxrss_mib = int(done.stderr.rsplit("maxrss_kib=", 1)[1].split()[0]) / 1024
    assert maxrss_mib < 400, f"validate used {maxrss_mib:.0f} MiB for a folder with a 50 MB file"
