"""Reading a manifests folder, and printing findings for people (text), tools (json) and GitHub (annotations)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import TextIO

from reconciler.diagnostics import Finding, Severity, has_errors
from reconciler.manifests.loader import MAX_FILE_BYTES, is_manifest_path

_COLORS = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m"}
_BOLD = "\033[1m"
_RESET = "\033[0m"
# Enough of any file to find a committed private key; a key is a few KiB of text near where it was pasted.
MAX_SCANNED_BYTES = 16 * 1024 * 1024


class UsageError(Exception):
    """A mistake in how the command was called: `main` prints it as one sentence and exits 2."""


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every manifest file below `folder`, keyed by its path relative to it (hidden folders skipped).

    A file over the loader's size limit is read only up to just past it: the loader refuses it anyway, and
    memory stays bounded whatever lands in the folder.
    """
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    return {
        relative: _read_head(path, MAX_FILE_BYTES + 1)
        for relative, path in _files(folder, skip_hidden=True)
        if is_manifest_path(path.name)
    }


class FolderFiles(Mapping[str, bytes]):
    """Every file below a folder but `.git` (hidden ones too: `.env` files leak keys), for the secret scan.

    Files are read when looked up, one at a time and at most MAX_SCANNED_BYTES each, so scanning a folder
    full of large binaries never holds more than one of them in memory.
    """

    def __init__(self, folder: Path) -> None:
        self._paths = dict(_files(folder, skip_hidden=False))

    def __getitem__(self, relative: str) -> bytes:
        return _read_head(self._paths[relative], MAX_SCANNED_BYTES)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def _files(folder: Path, skip_hidden: bool) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if ".git" in relative.parts or (skip_hidden and any(part.startswith(".") for part in relative.parts)):
            continue
        if path.is_file() and not path.is_symlink():
            yield relative.as_posix(), path


def _read_head(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(limit)
    except OSError:
        return b""


def print_findings(findings: Sequence[Finding], fmt: str, resources: int, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout  # looked up at call time, so redirections (and tests) see the output
    if fmt == "json":
        payload = {"valid": not has_errors(findings), "findings": [f.to_json() for f in findings]}
        print(json.dumps(payload, indent=2), file=stream)
    elif fmt == "github":
        for f in findings:
            print(github_annotation(f), file=stream)
    else:
        print_text(findings, resources, stream)


def github_annotation(f: Finding) -> str:
    """A workflow command: GitHub shows it on the line of the pull request's diff."""
    level = "error" if f.is_error else "warning"
    message = f"{f.code}: {f.message}"
    if f.related:
        message += f" (see also {', '.join(str(loc) for loc in f.related)})"
    message = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    title = f.resource.replace("%", "%25").replace(",", "%2C").replace(":", "%3A") or f.code
    return f"::{level} file={f.location.file},line={f.location.line},col={f.location.column},title={title}::{message}"


def print_text(findings: Sequence[Finding], resources: int, stream: TextIO) -> None:
    color = stream.isatty()
    for file, group in groupby(findings, key=lambda f: f.location.file):
        print(f"{_BOLD}{file}{_RESET}" if color else file, file=stream)
        for f in group:
            label = f.severity.value
            if color:
                label = f"{_COLORS[f.severity]}{label}{_RESET}"
            where = f"{f.location.line}:{f.location.column}"
            subject = f" [{f.resource}]" if f.resource else ""
            print(f"  {where:>8}  {label} {f.code}{subject}: {f.message}", file=stream)
            for related in f.related:
                print(f"  {'':>8}  see also {related}", file=stream)
    errors = sum(f.is_error for f in findings)
    warnings = len(findings) - errors
    verdict = "invalid" if errors else "valid"
    print(f"{resources} resource(s): {verdict}, {errors} error(s), {warnings} warning(s)", file=stream)
