"""What a revision changes for each fleet, computed on the rendered Envoy resources (pure).

Both revisions go through the same pipeline and are compared as canonical JSON, so moving a document to
another file, reordering YAML keys or renaming files is no change, while anything Envoy would do
differently is: listeners and clusters by name (with the fields that changed), and routes semantically,
keyed by (route table, hosts, match), with destinations, weights and policies before and after, and
routes whose place in their virtual host moved (Envoy takes the first match).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.diagnostics import Finding, has_errors
from reconciler.plan.routes import RouteEntry, RouteKey, route_entries
from reconciler.translate.snapshot import Snapshot

MAX_FIELD_PATHS = 8  # changed fields listed per resource; more are summarised


@dataclass(frozen=True)
class ResourceChanges:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, changed field paths)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [{"name": name, "fields": list(fields)} for name, fields in self.changed],
        }


@dataclass(frozen=True)
class RouteChange:
    change: str  # added | removed | changed | moved
    key: RouteKey
    before: RouteEntry | None
    after: RouteEntry | None

    def to_json(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "routeConfig": self.key.route_config,
            "hosts": self.key.hosts,
            "match": self.key.match,
            "before": self.before.to_json() if self.before else None,
            "after": self.after.to_json() if self.after else None,
        }


@dataclass(frozen=True)
class FleetPlan:
    name: str
    status: str  # added | removed | changed | unchanged
    listeners: ResourceChanges
    clusters: ResourceChanges
    secrets: ResourceChanges
    routes: tuple[RouteChange, ...]
    hosts: frozenset[str]  # every host the fleet serves, before or after
    touched_hosts: frozenset[str]
    route_count: int  # routes before or after (the union of keys)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "listeners": self.listeners.to_json(),
            "clusters": self.clusters.to_json(),
            "secrets": self.secrets.to_json(),
            "routes": [r.to_json() for r in self.routes],
        }


@dataclass(frozen=True)
class BlastRadius:
    fleets: int
    fleets_total: int
    hosts: int
    hosts_total: int
    routes: int
    routes_total: int

    @property
    def route_share(self) -> float:
        return self.routes / self.routes_total if self.routes_total else 0.0

    def sentence(self) -> str:
        return (
            f"{self.fleets} of {self.fleets_total} fleet(s), {self.hosts} of {self.hosts_total} host(s), "
            f"{self.routes} of {self.routes_total} route(s) ({self.route_share:.0%}) touched"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "fleets": self.fleets,
            "fleetsTotal": self.fleets_total,
            "hosts": self.hosts,
            "hostsTotal": self.hosts_total,
            "routes": self.routes,
            "routesTotal": self.routes_total,
        }


@dataclass(frozen=True)
class Plan:
    base: str
    head: str
    fleets: tuple[FleetPlan, ...]
    findings: tuple[Finding, ...] = field(default=())  # the head revision's
    base_valid: bool = True

    @property
    def head_valid(self) -> bool:
        return not has_errors(self.findings)

    @property
    def changed_fleets(self) -> list[FleetPlan]:
        return [f for f in self.fleets if f.status != "unchanged"]

    def blast_radius(self) -> BlastRadius:
        return BlastRadius(
            fleets=len(self.changed_fleets),
            fleets_total=len(self.fleets),
            hosts=len(frozenset().union(*(f.touched_hosts for f in self.fleets))),
            hosts_total=len(frozenset().union(*(f.hosts for f in self.fleets))),
            routes=sum(len(f.routes) for f in self.fleets),
            routes_total=sum(f.route_count for f in self.fleets),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "head": self.head,
            "headValid": self.head_valid,
            "baseValid": self.base_valid,
            "blastRadius": self.blast_radius().to_json(),
            "fleets": [f.to_json() for f in self.fleets],
            "findings": [f.to_json() for f in self.findings],
        }


def compute_plan(
    base: Mapping[str, Snapshot],
    head: Mapping[str, Snapshot],
    head_findings: tuple[Finding, ...],
    base_label: str,
    head_label: str,
    base_valid: bool = True,
) -> Plan:
    if has_errors(head_findings):
        return Plan(base_label, head_label, (), head_findings, base_valid)
    fleets = tuple(diff_fleet(name, base.get(name), head.get(name)) for name in sorted(set(base) | set(head)))
    return Plan(base_label, head_label, fleets, head_findings, base_valid)


def diff_fleet(name: str, base: Snapshot | None, head: Snapshot | None) -> FleetPlan:
    before = base.to_dict() if base is not None else {}
    after = head.to_dict() if head is not None else {}
    listeners = _diff_named(before.get("listeners", []), after.get("listeners", []), "name")
    clusters = _diff_clusters(before, after)
    secrets = _diff_named(before.get("secrets", []), after.get("secrets", []), "name")
    old_routes, new_routes = route_entries(before), route_entries(after)
    routes = tuple(_diff_routes(old_routes, new_routes))
    all_hosts = {k.hosts for k in (*old_routes, *new_routes)}
    touched = {r.key.hosts for r in routes}
    if base is None or head is None:
        status = "added" if base is None else "removed"
    elif base.version == head.version:
        status = "unchanged"
    else:
        status = "changed"
    return FleetPlan(
        name,
        status,
        listeners,
        clusters,
        secrets,
        routes,
        frozenset(all_hosts),
        frozenset(touched),
        len(set(old_routes) | set(new_routes)),
    )


def _diff_named(before: list[dict[str, Any]], after: list[dict[str, Any]], key: str) -> ResourceChanges:
    old = {str(r.get(key, "")): r for r in before}
    new = {str(r.get(key, "")): r for r in after}
    changed = tuple((n, _changed_fields(old[n], new[n])) for n in sorted(set(old) & set(new)) if old[n] != new[n])
    return ResourceChanges(tuple(sorted(set(new) - set(old))), tuple(sorted(set(old) - set(new))), changed)


def _diff_clusters(before: dict[str, Any], after: dict[str, Any]) -> ResourceChanges:
    """Clusters with their endpoints: a changed ClusterLoadAssignment is a change of its cluster."""

    def merged(rendered: dict[str, Any]) -> list[dict[str, Any]]:
        endpoints = {e.get("clusterName"): e for e in rendered.get("endpoints", [])}
        out = []
        for cluster in rendered.get("clusters", []):
            combined = dict(cluster)
            if cluster.get("name") in endpoints:
                combined["endpoints"] = endpoints[cluster["name"]].get("endpoints", [])
            out.append(combined)
        return out

    return _diff_named(merged(before), merged(after), "name")


def _changed_fields(old: Any, new: Any, prefix: str = "") -> tuple[str, ...]:
    paths = list(_field_paths(old, new, prefix))
    if len(paths) > MAX_FIELD_PATHS:
        paths = [*paths[:MAX_FIELD_PATHS], f"... and {len(paths) - MAX_FIELD_PATHS} more"]
    return tuple(paths)


def _field_paths(old: Any, new: Any, prefix: str) -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                yield from _field_paths(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
    elif old != new:
        yield prefix or "(whole resource)"


def _diff_routes(old: dict[RouteKey, RouteEntry], new: dict[RouteKey, RouteEntry]) -> Iterator[RouteChange]:
    moved = _moved(old, new)
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before is None:
            yield RouteChange("added", key, None, after)
        elif after is None:
            yield RouteChange("removed", key, before, None)
        elif (before.action, before.policies) != (after.action, after.policies):
            yield RouteChange("changed", key, before, after)
        elif key in moved:
            yield RouteChange("moved", key, before, after)


def _moved(old: dict[RouteKey, RouteEntry], new: dict[RouteKey, RouteEntry]) -> set[RouteKey]:
    """Routes whose order relative to the other routes kept in their virtual host changed."""
    out: set[RouteKey] = set()
    groups: dict[tuple[str, str], list[RouteKey]] = {}
    for key in set(old) & set(new):
        groups.setdefault((key.route_config, key.hosts), []).append(key)
    for keys in groups.values():
        before = sorted(keys, key=lambda k: old[k].position)
        after = sorted(keys, key=lambda k: new[k].position)
        out.update(b for b, a in zip(before, after, strict=True) if b != a)
    return out
