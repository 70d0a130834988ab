"""Envoy routes as a reviewer reads them: (route table, hosts, match) → destinations and policies (pure).

Built from the canonical rendering of a snapshot (`Snapshot.to_dict()`), so two revisions that render the
same Envoy config give the same entries, whatever their YAML looked like.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Route fields that identify or label a route rather than say what it does.
_IDENTITY_FIELDS = frozenset({"name", "match", "metadata"})
_DESTINATION_FIELDS = frozenset({"cluster", "weightedClusters"})


@dataclass(frozen=True, order=True)
class RouteKey:
    route_config: str  # e.g. http.8080
    hosts: str  # the virtual host's domains, comma-separated
    match: str  # e.g. "prefix /api, header x-user = alice"
    occurrence: int = 0  # the same match again in one virtual host (never reached, but still a route)


@dataclass(frozen=True)
class RouteEntry:
    key: RouteKey
    position: int  # index in its virtual host: Envoy takes the first route that matches
    action: str  # "→ shop.internal:80 (blue) 90%, ..." or "redirect ..." / "respond 503"
    policies: tuple[tuple[str, str], ...]  # flattened route settings besides the destinations, sorted
    source: str  # the VirtualService (namespace/name) the route came from, if known

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "policies": dict(self.policies),
            "position": self.position,
            "source": self.source,
        }


def route_entries(rendered: dict[str, Any]) -> dict[RouteKey, RouteEntry]:
    entries: dict[RouteKey, RouteEntry] = {}
    for config in rendered.get("routes", []):
        for vhost in config.get("virtualHosts", []):
            hosts = ", ".join(vhost.get("domains", []))
            for position, route in enumerate(vhost.get("routes", [])):
                match = describe_match(route.get("match", {}))
                occurrence = 0
                while (key := RouteKey(config.get("name", ""), hosts, match, occurrence)) in entries:
                    occurrence += 1
                action, policies = _describe_action(route)
                entries[key] = RouteEntry(key, position, action, policies, _source(route))
    return entries


def describe_match(match: dict[str, Any]) -> str:
    parts = []
    for field_name, label in (("prefix", "prefix"), ("path", "path"), ("pathSeparatedPrefix", "path prefix")):
        if field_name in match:
            parts.append(f"{label} {match[field_name] or '(empty)'}")
    if "safeRegex" in match:
        parts.append(f"regex {match['safeRegex'].get('regex', '')}")
    if match.get("caseSensitive") is False:
        parts.append("ignoring case")
    for header in match.get("headers", []):
        parts.append(f"header {header.get('name', '')} {_describe_matcher(header)}")
    for param in match.get("queryParameters", []):
        parts.append(f"query {param.get('name', '')} {_describe_matcher(param)}")
    return ", ".join(parts) or "any path"


def _describe_matcher(matcher: dict[str, Any]) -> str:
    negation = "not " if matcher.get("invertMatch") else ""
    if matcher.get("presentMatch"):
        return f"{negation}present"
    string = matcher.get("stringMatch", {})
    for kind, label in (("exact", "="), ("prefix", "starts with"), ("suffix", "ends with"), ("contains", "contains")):
        if kind in string:
            return f"{negation}{label} {string[kind]}"
    if "safeRegex" in string:
        return f"{negation}matches {string['safeRegex'].get('regex', '')}"
    return negation + json.dumps(matcher, sort_keys=True)


def _describe_action(route: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    rest = {k: v for k, v in route.items() if k not in _IDENTITY_FIELDS}
    if "route" in rest:
        action = dict(rest.pop("route"))
        targets = _destinations(action)
        rest.update({f"route.{k}": v for k, v in action.items() if k not in _DESTINATION_FIELDS})
        described = "→ " + ", ".join(targets) if targets else "→ (no destination)"
    elif "redirect" in rest:
        described = "redirect " + _compact(rest.pop("redirect"))
    elif "directResponse" in rest:
        response = rest.pop("directResponse")
        described = f"respond {response.get('status', '?')}"
        if "body" in response:
            rest["directResponse.body"] = response["body"]
    else:
        described = "(no action)"
    return described, tuple(sorted(_flatten(rest)))


def _destinations(action: dict[str, Any]) -> list[str]:
    if "cluster" in action:
        return [describe_cluster(action["cluster"])]
    clusters = action.get("weightedClusters", {}).get("clusters", [])
    total = sum(int(c.get("weight", 0)) for c in clusters) or 1
    return [f"{describe_cluster(c.get('name', ''))} {100 * int(c.get('weight', 0)) / total:g}%" for c in clusters]


def describe_cluster(name: str) -> str:
    """`outbound|80|blue|shop.internal` → `shop.internal:80 (blue)`; other names as they are."""
    parts = name.split("|")
    if len(parts) != 4:
        return name
    _, port, subset, host = parts
    return f"{host}:{port}" + (f" ({subset})" if subset else "")


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, _compact(value)


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _source(route: dict[str, Any]) -> str:
    config = str(route.get("metadata", {}).get("filterMetadata", {}).get("istio", {}).get("config", ""))
    parts = config.split("/")
    # /apis/networking.istio.io/v1/namespaces/<ns>/virtual-service/<name>
    if len(parts) >= 8 and parts[4] == "namespaces":
        return f"{parts[5]}/{parts[7]}"
    return ""
