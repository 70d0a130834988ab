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
from reconciler.validation.index import RepoIndex
from reconciler.validation.item_checks import ItemChecks
from reconciler.validation.memo import ValidationMemo
from reconciler.validation.references import check_gateway_fleets
from reconciler.validation.secrets import SecretScanner, scan_for_secrets


def validate(manifests: ManifestSet, config: ResolvedConfig, memo: ValidationMemo | None = None) -> list[Finding]:
    """`memo`, kept between builds, keeps what was found about every item that did not change, and every item
    whose inputs did not: the result is the same without it, in the same order."""
    checks = memo if memo is not None else ItemChecks()
    checks.start_build()
    documents = [checks.document(resource) for resource in manifests.resources]
    findings = list(chain.from_iterable(document.findings for document in documents))
    index = RepoIndex.of(documents, config)
    checks.use_index(index)
    per_vs = [checks.virtual_service(vs, index) for vs in config.virtual_services]
    findings.extend(chain.from_iterable(vs.references for vs in per_vs))
    findings.extend(check_gateway_fleets(index))
    bindings = chain.from_iterable(vs.bindings for vs in per_vs)
    findings.extend(analyze(config, bindings, chain.from_iterable(vs.delegates for vs in per_vs)))
    findings.extend(chain.from_iterable(vs.routes for vs in per_vs))
    findings.extend(chain.from_iterable(checks.service_entry(entry) for entry in index.service_entries))
    findings.extend(chain.from_iterable(checks.destination_rule(rule, index) for rule in index.rule_documents))
    return findings


__all__ = [
    "FileProbe",
    "SecretScanner",
    "ValidationMemo",
    "check_certificate_files",
    "scan_for_secrets",
    "validate",
]
