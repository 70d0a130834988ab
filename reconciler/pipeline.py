"""The pure core end to end: manifest files at one revision → findings and one snapshot per fleet.

The daemon, `validate`, `render` and `plan` all call this one function, so what a reviewer sees is
exactly what the daemon would serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.config.model import ResolvedConfig
from reconciler.config.resolve import resolve
from reconciler.diagnostics import Finding, has_errors, sort_findings
from reconciler.manifests.loader import ManifestSet, load_manifests
from reconciler.translate import TranslateOptions, translate_fleet
from reconciler.translate.snapshot import Snapshot
from reconciler.validation import validate


@dataclass(frozen=True)
class Build:
    manifests: ManifestSet
    config: ResolvedConfig | None
    snapshots: Mapping[str, Snapshot]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not has_errors(self.findings)


def build(files: Mapping[str, bytes], options: TranslateOptions | None = None, lenient: bool = False) -> Build:
    manifests = load_manifests(files, lenient=lenient)
    findings = list(manifests.findings)
    config = resolve(manifests)
    findings.extend(config.findings)
    findings.extend(validate(manifests, config))
    snapshots: dict[str, Snapshot] = {}
    if not has_errors(findings):
        for fleet in config.fleets:
            translation = translate_fleet(config, fleet, options)
            findings.extend(translation.findings)
            snapshots[fleet] = translation.snapshot
    return Build(manifests, config, snapshots, tuple(sort_findings(findings)))
