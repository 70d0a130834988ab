"""What every validation module shares: a per-resource finding collector and field paths."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.diagnostics import Finding, Location, Severity
from reconciler.manifests.model import Resource

Path = tuple[str | int, ...]


class ResourceReport:
    """Collects the findings about one manifest document, each at the exact place of the field it names."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.findings: list[Finding] = []

    def error(self, path: Path, code: str, message: str, related: Iterable[Location] = ()) -> None:
        self.add(Severity.ERROR, path, code, message, related)

    def warning(self, path: Path, code: str, message: str, related: Iterable[Location] = ()) -> None:
        self.add(Severity.WARNING, path, code, message, related)

    def add(self, severity: Severity, path: Path, code: str, message: str, related: Iterable[Location] = ()) -> None:
        self.findings.append(
            Finding(severity, code, message, self.resource.locate(*path), self.resource.ref, tuple(related))
        )


def finding_at(
    resource: Resource,
    path: Path,
    severity: Severity,
    code: str,
    message: str,
    related: Iterable[Location] = (),
) -> Finding:
    return Finding(severity, code, message, resource.locate(*path), resource.ref, tuple(related))
