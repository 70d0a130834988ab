"""Translate a resolved fleet into the Envoy resources its members receive (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.config.listeners import plan_listeners
from reconciler.config.model import ResolvedConfig
from reconciler.diagnostics import Finding
from reconciler.translate.listener_build import FleetContext, build_port
from reconciler.translate.memos import TranslateMemos
from reconciler.translate.secrets import Credential, SecretBook
from reconciler.translate.snapshot import Snapshot, XdsResource

__all__ = ["Credential", "TranslateMemos", "TranslateOptions", "Translation", "translate_fleet"]


@dataclass(frozen=True)
class TranslateOptions:
    # The address listeners bind when a Gateway server has no `bind`. istiod binds 0.0.0.0; tests and
    # the demo bind 127.0.0.1. Listener names keep istiod's `0.0.0.0_<port>` either way.
    default_bind: str = "0.0.0.0"
    # TLS key material by credential name, read by the daemon from its secrets folder (never from git).
    # None where no material exists (`validate`, `render`): listeners still name their SDS Secrets, but no
    # Secret is emitted and a missing credential is not an error.
    credentials: Mapping[str, Credential] | None = None


@dataclass(frozen=True)
class Translation:
    snapshot: Snapshot
    findings: tuple[Finding, ...] = field(default=())


def translate_fleet(
    config: ResolvedConfig, fleet: str, options: TranslateOptions | None = None, memos: TranslateMemos | None = None
) -> Translation:
    """`memos` replaces how per-item pieces are built, e.g. by a cache kept between builds (pipeline_cache)."""
    options = options or TranslateOptions()
    memos = memos or TranslateMemos()
    context = FleetContext(config, fleet, options.default_bind, SecretBook(options.credentials), memos=memos)
    clusters = memos.clusters(config)
    ports: list[XdsResource] = []
    # What the listener plan leaves out is validation's to report (validation.analysis), not reported again here.
    for group in plan_listeners(config, config.fleets[fleet]).ports:
        ports.extend(build_port(context, group))
    secrets = [XdsResource.of(secret) for secret in context.secrets.resources()]
    snapshot = memos.snapshots(fleet, (clusters, ports, secrets))
    return Translation(snapshot, (*context.findings, *context.secrets.findings))
