"""Findings: what every pure stage reports about the manifests it reads.

A finding is a sentence for a person plus where to look (file, line, column) and a stable code that
tools can match on. Stages never raise for bad user input; they return findings, and the caller decides
whether a revision is applied (no errors) or rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Location:
    """A place in a manifest file; `file` is relative to the manifests folder."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    message: str
    location: Location
    resource: str = ""  # "Kind namespace/name", empty when the problem is the file itself
    related: tuple[Location, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "resource": self.resource,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
        }
        if self.related:
            out["related"] = [str(loc) for loc in self.related]
        return out

    def __str__(self) -> str:
        where = f" ({self.resource})" if self.resource else ""
        return f"{self.location}: {self.severity.value} {self.code}{where}: {self.message}"


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.is_error for f in findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Stable, reader-friendly order: by file and position, errors before warnings at one place."""
    return sorted(findings, key=lambda f: (f.location, f.severity is not Severity.ERROR, f.code, f.message))
