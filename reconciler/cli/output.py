"""Printing findings for people (text), tools (json) and GitHub Actions (workflow annotations)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import TextIO

from reconciler.diagnostics import Finding, Severity, has_errors
from reconciler.manifests.loader import is_manifest_path

_COLORS = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m"}
_RESET = "\033[0m"


def read_folder(folder: Path) -> dict[str, bytes] | None:
    """Every manifest file below `folder`, keyed by its path relative to it (hidden folders skipped)."""
    if not folder.is_dir():
        return None
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if is_manifest_path(path.name):
            files[relative.as_posix()] = path.read_bytes()
    return files


def print_findings(findings: Sequence[Finding], fmt: str, resources: int, stream: TextIO = sys.stdout) -> None:
    if fmt == "json":
        payload = {"valid": not has_errors(findings), "findings": [f.to_json() for f in findings]}
        print(json.dumps(payload, indent=2), file=stream)
        return
    if fmt == "github":
        for f in findings:
            level = "error" if f.is_error else "warning"
            message = f"{f.code}: {f.message}".replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            print(
                f"::{level} file={f.location.file},line={f.location.line},col={f.location.column}::{message}",
                file=stream,
            )
        return
    color = stream.isatty()
    for file, group in groupby(findings, key=lambda f: f.location.file):
        print(file, file=stream)
        for f in group:
            label = f.severity.value
            if color:
                label = f"{_COLORS[f.severity]}{label}{_RESET}"
            where = f"{f.location.line}:{f.location.column}"
            subject = f" [{f.resource}]" if f.resource else ""
            print(f"  {where:>8}  {label} {f.code}{subject}: {f.message}", file=stream)
    errors = sum(f.is_error for f in findings)
    warnings = len(findings) - errors
    verdict = "invalid" if errors else "valid"
    print(f"{resources} resource(s): {verdict}, {errors} error(s), {warnings} warning(s)", file=stream)
