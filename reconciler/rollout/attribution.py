"""Point an Envoy rejection at what caused it: the resource, and where possible the manifest and its line.

Envoy's NACK text names a listener or cluster but not a route; a route is found by the text it quotes
(e.g. the bad regex), and leads back to its VirtualService through the `istio.config` metadata every route
carries. Best effort by design: when nothing matches, the message says only what Envoy said.
"""

from __future__ import annotations

import json

from google.protobuf import json_format

from reconciler.manifests.loader import ManifestSet
from reconciler.translate.snapshot import ROUTE, Snapshot

_VS_PATH_MARK = "/virtual-service/"


def attribute_rejection(
    type_url: str, error: str, target: Snapshot, last_good: Snapshot, manifests: ManifestSet
) -> str:
    """A suffix for a NACK message: `(RouteConfiguration http.8080, VirtualService shop/r at routes/r.yaml:3:1)`."""
    resources = target.of_type(type_url)
    previous = last_good.of_type(type_url)
    changed = [n for n, r in resources.items() if n not in previous or previous[n].digest != r.digest]
    quoted = error.rsplit(": ", 1)[-1].strip()
    named = [n for n in resources if n and n in error]
    candidates = named or changed
    parts = [f"{type_url.rsplit('.', 1)[-1]} {', '.join(candidates[:3])}"] if candidates else []
    if type_url == ROUTE and quoted:
        for name in candidates:
            for ref in _virtual_services_quoting(resources[name].message(), quoted):
                parts.append(_locate(ref, manifests))
    return f" ({'; '.join(parts)})" if parts else ""


def _virtual_services_quoting(route_config: object, quoted: str) -> list[str]:
    found = []
    rendered = json.loads(json_format.MessageToJson(route_config))  # type: ignore[arg-type]
    for vhost in rendered.get("virtualHosts", []):
        for route in vhost.get("routes", []):
            config = route.get("metadata", {}).get("filterMetadata", {}).get("istio", {}).get("config", "")
            if quoted in json.dumps(route) and _VS_PATH_MARK in config:
                namespace = config.split("/namespaces/", 1)[1].split("/", 1)[0]
                ref = f"VirtualService {namespace}/{config.rsplit('/', 1)[1]}"
                if ref not in found:
                    found.append(ref)
    return found


def _locate(ref: str, manifests: ManifestSet) -> str:
    for resource in manifests.resources:
        if resource.ref == ref:
            return f"{ref} at {resource.location}"
    return ref
