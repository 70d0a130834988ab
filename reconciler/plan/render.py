"""A Plan as text (terminal), markdown (a pull-request comment) or JSON (tools)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from reconciler.diagnostics import Finding
from reconciler.plan.diff import FleetPlan, Plan, ResourceChanges, RouteChange
from reconciler.plan.routes import RouteEntry

SYMBOLS = {"added": "+", "removed": "-", "changed": "~", "moved": "^"}
MAX_MARKDOWN_FINDINGS = 50


def render(plan: Plan, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return "\n".join(_markdown(plan)) + "\n"
    return "\n".join(_text(plan)) + "\n"


def policy_changes(change: RouteChange) -> list[tuple[str, str, str]]:
    """(setting, before, after) for each route setting that differs, `(none)` where it is absent."""
    before = dict(change.before.policies) if change.before else {}
    after = dict(change.after.policies) if change.after else {}
    return [
        (key, before.get(key, "(none)"), after.get(key, "(none)"))
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def _verdict(findings: tuple[Finding, ...]) -> str:
    errors = sum(f.is_error for f in findings)
    return f"{'invalid' if errors else 'valid'}, {errors} error(s), {len(findings) - errors} warning(s)"


# ------------------------------------------------------------------------------------------------ text


def _text(plan: Plan) -> Iterator[str]:
    yield f"Plan: {plan.base} -> {plan.head}"
    if not plan.head_valid:
        yield f"The head revision is invalid ({_verdict(plan.findings)}); nothing would be applied."
    else:
        if not plan.base_valid:
            yield "The base revision is invalid; its fleets are shown as empty."
        yield f"Blast radius: {plan.blast_radius().sentence()}"
        for fleet in plan.fleets:
            yield ""
            yield from _text_fleet(fleet)
    yield ""
    yield f"Validation of {plan.head}: {_verdict(plan.findings)}"
    for finding in plan.findings:
        yield f"  {finding}"


def _text_fleet(fleet: FleetPlan) -> Iterator[str]:
    yield f"Fleet {fleet.name}: {fleet.status}"
    if fleet.status == "unchanged":
        return
    for label, changes in (("listeners", fleet.listeners), ("clusters", fleet.clusters), ("secrets", fleet.secrets)):
        if not changes.empty:
            yield f"  {label}:"
            yield from (f"    {line}" for line in _resource_lines(changes))
    if fleet.routes:
        yield "  routes:"
    for change in fleet.routes:
        key = change.key
        yield f"    {SYMBOLS[change.change]} {key.route_config}  {key.hosts}  {key.match}"
        yield from (f"        {line}" for line in _route_lines(change))


def _resource_lines(changes: ResourceChanges) -> Iterator[str]:
    yield from (f"+ {name}" for name in changes.added)
    yield from (f"- {name}" for name in changes.removed)
    for name, fields in changes.changed:
        yield f"~ {name} ({', '.join(fields)})"


def _route_lines(change: RouteChange) -> Iterator[str]:
    before, after = change.before, change.after
    if change.change == "added" and after is not None:
        yield f"{after.action}{_source(after)}"
        yield from (f"{key}: {value}" for key, value in after.policies if key not in _DEFAULTS_HIDDEN)
    elif change.change == "removed" and before is not None:
        yield f"was {before.action}{_source(before)}"
    elif before is not None and after is not None:
        if before.action != after.action:
            yield f"before: {before.action}"
            yield f"after:  {after.action}{_source(after)}"
        for key, old, new in policy_changes(change):
            yield f"{key}: {old} -> {new}"
        if before.position != after.position:
            yield f"position in its virtual host: {before.position} -> {after.position}"


def _source(entry: RouteEntry) -> str:
    return f"  [VirtualService {entry.source}]" if entry.source else ""


# Mechanical settings every route carries; listing them for each added route hides what is special about it.
_DEFAULTS_HIDDEN = frozenset(
    {
        "route.maxStreamDuration.grpcTimeoutHeaderMax",
        "route.retryPolicy.hostSelectionRetryMaxAttempts",
        "route.retryPolicy.retryHostPredicate",
    }
)


# -------------------------------------------------------------------------------------------- markdown


def _markdown(plan: Plan) -> Iterator[str]:
    yield f"### Gateway plan: `{plan.base}` → `{plan.head}`"
    yield ""
    if not plan.head_valid:
        yield f"**The head revision is invalid** ({_verdict(plan.findings)}): the daemon would not apply it."
    else:
        if not plan.base_valid:
            yield "_The base revision is invalid; its fleets are shown as empty._"
            yield ""
        yield f"**Blast radius:** {plan.blast_radius().sentence()}"
        unchanged = [f.name for f in plan.fleets if f.status == "unchanged"]
        for fleet in plan.changed_fleets:
            yield ""
            yield from _markdown_fleet(fleet)
        if unchanged:
            yield ""
            yield f"Unchanged fleets: {', '.join(f'`{name}`' for name in unchanged)}"
    yield ""
    yield f"#### Validation: {_verdict(plan.findings)}"
    if plan.findings:
        yield ""
        for finding in plan.findings[:MAX_MARKDOWN_FINDINGS]:
            where = f"`{finding.location}`"
            yield f"- **{finding.severity.value}** `{finding.code}` {where}: {_escape(finding.message)}"
        if len(plan.findings) > MAX_MARKDOWN_FINDINGS:
            yield f"- ... and {len(plan.findings) - MAX_MARKDOWN_FINDINGS} more (run `reconciler validate`)"


def _markdown_fleet(fleet: FleetPlan) -> Iterator[str]:
    yield f"#### Fleet `{fleet.name}` ({fleet.status})"
    for label, changes in (("Listeners", fleet.listeners), ("Clusters", fleet.clusters), ("Secrets", fleet.secrets)):
        if not changes.empty:
            yield ""
            yield f"{label}:"
            yield from (f"- `{line}`" for line in _resource_lines(changes))
    if not fleet.routes:
        return
    yield ""
    yield "| | Route table | Hosts | Match | Before | After |"
    yield "|---|---|---|---|---|---|"
    for change in fleet.routes:
        key = change.key
        before = _cell(change.before, change, after=False)
        after = _cell(change.after, change, after=True)
        cells = [SYMBOLS[change.change], key.route_config, key.hosts, key.match, before, after]
        yield "| " + " | ".join(_escape(c) if i < 4 else c for i, c in enumerate(cells)) + " |"


def _cell(entry: RouteEntry | None, change: RouteChange, after: bool) -> str:
    if entry is None:
        return ""
    lines = [_escape(entry.action)]
    if change.change == "added":
        lines.extend(
            f"`{_escape(key)}`: {_escape(value)}" for key, value in entry.policies if key not in _DEFAULTS_HIDDEN
        )
    elif change.change in ("changed", "moved"):
        for key, old, new in policy_changes(change):
            lines.append(f"`{_escape(key)}`: {_escape(new if after else old)}")
        if change.before and change.after and change.before.position != change.after.position:
            lines.append(f"position {entry.position}")
    last_side = after or change.after is None
    if last_side and entry.source:
        lines.append(f"_VirtualService {entry.source}_")
    return "<br>".join(lines)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
