"""The validation stage: Istio's rules, RE2, cross-resource analysis (pure), and Envoy preflight (effectful).

`validate` is what `pipeline.build` runs. `scan_for_secrets` (every file of the tree, not only manifests) and
`check_certificate_files` (paths on the Envoy host) are separate because they need inputs `build` does not
have; the CLI and the daemon call them. `reconciler.validation.preflight` runs a real Envoy and is the only
effectful module here: pure modules must not import it.
"""

from __future__ import annotations

from reconciler.config.model import ResolvedConfig
from reconciler.diagnostics import Finding
from reconciler.manifests.loader import ManifestSet
from reconciler.validation.analysis import analyze
from reconciler.validation.certificates import FileProbe, check_certificate_files
from reconciler.validation.references import check_references
from reconciler.validation.route_checks import check_http_routes
from reconciler.validation.rules import ResourceCheck, check_resources
from reconciler.validation.secrets import scan_for_secrets
from reconciler.validation.upstreams import check_upstreams


def validate(manifests: ManifestSet, config: ResolvedConfig, check: ResourceCheck | None = None) -> list[Finding]:
    """`check` replaces the per-document rules (`rules.check_resource`), e.g. by a cache keyed on the document."""
    findings = check_resources(manifests.resources, check)
    findings.extend(check_references(manifests, config))
    findings.extend(analyze(manifests, config))
    findings.extend(check_http_routes(config))
    findings.extend(check_upstreams(manifests, config))
    return findings


__all__ = ["FileProbe", "check_certificate_files", "scan_for_secrets", "validate"]
