"""The pure core end to end: manifest files at one revision → findings and one snapshot per fleet.

The daemon, `validate`, `render` and `plan` all call this one function, so what a reviewer sees is
exactly what the daemon would serve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.config.model import ResolvedConfig
from reconciler.config.resolve import resolve
from reconciler.diagnostics import Finding, has_errors, sort_findings
from reconciler.heap import fewer_full_collections
from reconciler.manifests.loader import ManifestSet, load_manifests
from reconciler.pipeline_cache import BuildCache
from reconciler.translate import TranslateOptions, translate_fleet
from reconciler.translate.snapshot import Snapshot
from reconciler.validation import validate


@dataclass(frozen=True)
class Build:
    manifests: ManifestSet
    config: ResolvedConfig
    snapshots: Mapping[str, Snapshot]  # the fleets no error touches
    findings: tuple[Finding, ...] = field(default=())
    blocked: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)  # fleet → the errors that block it

    @property
    def ok(self) -> bool:
        return not has_errors(self.findings)


def build(
    files: Mapping[str, bytes],
    options: TranslateOptions | None = None,
    lenient: bool = False,
    cache: BuildCache | None = None,
) -> Build:
    """`cache`, kept between builds, makes the work follow what changed; the result is the same without it."""
    with fewer_full_collections():  # a build allocates millions of long-lived objects (reconciler/heap.py)
        return _build(files, options, lenient, cache)


def _build(
    files: Mapping[str, bytes], options: TranslateOptions | None, lenient: bool, cache: BuildCache | None
) -> Build:
    if cache is not None:
        cache.start_build()
    manifests = cache.load(files, lenient) if cache is not None else load_manifests(files, lenient=lenient)
    findings = list(manifests.findings)
    config = resolve(manifests, memo=cache.resolve if cache else None)
    findings.extend(config.findings)
    findings.extend(validate(manifests, config, cache.validation if cache else None))
    blocked = blocking_errors(findings, config)
    snapshots: dict[str, Snapshot] = {}
    for fleet in config.fleets:
        if fleet in blocked:
            continue
        translation = translate_fleet(config, fleet, options, cache.translate_memos if cache else None)
        findings.extend(translation.findings)
        fleet_errors = tuple(f for f in translation.findings if f.is_error)
        if fleet_errors:
            blocked[fleet] = fleet_errors
        else:
            snapshots[fleet] = translation.snapshot
    return Build(manifests, config, snapshots, tuple(sort_findings(findings)), blocked)


def blocking_errors(findings: Iterable[Finding], config: ResolvedConfig) -> dict[str, tuple[Finding, ...]]:
    """Which fleets each error holds back.

    Isolation instead of blackout: an error in a Fleet, a Gateway or a VirtualService holds back only the
    fleets that resource reaches. Errors we cannot place — a malformed file, a resource that did not load,
    a ServiceEntry or DestinationRule — hold back every fleet, because we cannot show they are harmless.
    """
    errors = [finding for finding in findings if finding.is_error]
    if not errors:  # the common case: no need to map what each resource reaches
        return {}
    reach: dict[str, set[str]] = {}
    fleets_of_gateway: dict[str, set[str]] = {}
    for name, fleet in config.fleets.items():
        reach.setdefault(fleet.resource.ref, set()).add(name)
        for gateway in fleet.gateways:
            reach.setdefault(gateway.resource.ref, set()).add(name)
            fleets_of_gateway.setdefault(gateway.ref, set()).add(name)
    for vs in config.virtual_services:
        reached = reach.setdefault(vs.resource.ref, set())
        for gateway_ref in vs.gateways:
            reached.update(fleets_of_gateway.get(gateway_ref, ()))
    blocked: dict[str, list[Finding]] = {}
    for finding in errors:
        for held in reach.get(finding.resource, set(config.fleets)):
            blocked.setdefault(held, []).append(finding)
    return {held: tuple(errors) for held, errors in blocked.items()}
