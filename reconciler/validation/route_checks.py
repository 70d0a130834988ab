"""Warnings about HTTP rules that translate to less than they seem to say on a gateway.

Istio's own rules (webhook checks, redirect codes, weights, statuses) are in `http_route.py`; these are the
places where istiod's translation silently turns config into nothing, run once per VirtualService.
"""

from __future__ import annotations

from collections.abc import Iterator

from reconciler.config.model import ResolvedVirtualService
from reconciler.config.resolve import MESH, resolve_gateway_name
from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.model import HTTPFaultInjection, HTTPMatchRequest
from reconciler.validation.common import Path, finding_at

Problem = tuple[Severity, str, str, Path]


def check_http_routes(vs: ResolvedVirtualService) -> list[Finding]:
    """Reads nothing but the VirtualService."""
    findings: list[Finding] = []
    for index, rule in enumerate(vs.spec.http):
        problems = list(_fault_problems(rule.fault)) if rule.fault is not None else []
        for j, match in enumerate(rule.match):
            if match.gateways or match.source_namespace:  # what _match_problems reads: most matches have neither
                problems += [(s, c, m, ("match", j, *p)) for s, c, m, p in _match_problems(vs, match)]
        if problems:
            findings += [
                finding_at(vs.resource, ("spec", "http", index, *path), severity, code, message)
                for severity, code, message, path in problems
            ]
    return findings


def _fault_problems(fault: HTTPFaultInjection) -> Iterator[Problem]:
    delay = fault.delay
    if delay is not None and delay.fixed_delay is None:
        yield Severity.ERROR, "fault-delay-without-duration", "a delay needs fixedDelay", ("fault", "delay")
    if delay is not None and delay.percentage is None and not delay.percent:
        yield _unset_percentage("delay", "delayed")
    abort = fault.abort
    if abort is not None and abort.percentage is None:
        yield _unset_percentage("abort", "aborted")


def _unset_percentage(kind: str, verb: str) -> Problem:
    return (
        Severity.WARNING,
        "fault-percentage-unset",
        f"without a percentage no request is {verb} (Envoy's default, and what Istio documents); "
        "write `percentage: {value: 100}` to fault every request",
        ("fault", kind),
    )


def _match_problems(vs: ResolvedVirtualService, match: HTTPMatchRequest) -> Iterator[Problem]:
    for k, raw in enumerate(match.gateways):
        gateway = resolve_gateway_name(raw, vs.namespace)
        if gateway != MESH and gateway not in vs.gateways:
            yield (
                Severity.WARNING,
                "match-gateway-not-bound",
                f"gateway {gateway} is not among the VirtualService's gateways {list(vs.gateways)}, so this match "
                "never applies to it: match gateways can only narrow the top-level list (istio#31916)",
                ("gateways", k),
            )
    if match.source_namespace and not match.gateways:
        # istiod compares sourceNamespace with the gateway proxy's namespace: here, the Gateway's.
        foreign = [g for g in vs.gateways if g != MESH and g.split("/")[0] != match.source_namespace]
        if foreign:
            yield (
                Severity.WARNING,
                "source-namespace-on-gateway",
                f"on a gateway, sourceNamespace is compared with the gateway's own namespace, so this match never "
                f"applies on {', '.join(foreign)}; remove sourceNamespace",
                ("sourceNamespace",),
            )
