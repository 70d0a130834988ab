"""The validation stage: rules and cross-resource checks over the resolved config (pure).

Deeper rules (Istio's webhook, RE2, analyzers, Envoy preflight) grow here; each returns findings.
"""

from __future__ import annotations

from reconciler.config.model import ResolvedConfig
from reconciler.diagnostics import Finding
from reconciler.manifests.loader import ManifestSet
from reconciler.validation.references import check_references


def validate(manifests: ManifestSet, config: ResolvedConfig) -> list[Finding]:
    return check_references(manifests, config)


__all__ = ["validate"]
