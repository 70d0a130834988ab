"""The validation stage: Istio's rules, RE2, cross-resource analysis (pure), and Envoy preflight (effectful).

`validate` is what `pipeline.build` runs. `scan_for_secrets` (every file of the tree, not only manifests) and
`check_certificate_files` (paths on the Envoy host) are separate because they need inputs `build` does not
have; the CLI and the daemon call them. `reconciler.validation.preflight` runs a real Envoy and is the only
effectful module here: pure modules must not import it.
"""

from __future__ import annotations

from itertools import chain

from reconciler.config.model import ResolvedConfig
from reconciler.diagnostics import Finding
from reconciler.manifests.loader import ManifestSet
from reconciler.validation.analysis import analyze
from reconciler.validation.certificates import FileProbe, check_certificate_files
from reconciler.validation.item_checks import ItemChecks
from reconciler.validation.memo import ValidationMemo
from reconciler.validation.secrets import SecretScanner, scan_for_secrets


def validate(manifests: ManifestSet, config: ResolvedConfig, memo: ValidationMemo | None = None) -> list[Finding]:
    """`memo`, kept between builds, keeps what was found about every item that did not change, and every item
    whose inputs did not: the result is the same without it, in the same order."""
    checks = memo if memo is not None else ItemChecks()
    found = checks.check(manifests.resources, config)
    per_vs = found.virtual_services
    return [
        *found.documents,
        *chain.from_iterable(vs.references for vs in per_vs),
        *found.gateway_fleets,
        *analyze(
            config,
            chain.from_iterable(vs.bindings for vs in per_vs),
            chain.from_iterable(vs.delegates for vs in per_vs),
            checks.shared_hosts,
        ),
        *chain.from_iterable(vs.routes for vs in per_vs),
        *found.service_entries,
        *found.destination_rules,
    ]


__all__ = [
    "FileProbe",
    "SecretScanner",
    "ValidationMemo",
    "check_certificate_files",
    "scan_for_secrets",
    "validate",
]
