"""A fleet's Snapshot as one static Envoy bootstrap, for `envoy --mode validate` (pure).

Envoy validates a static bootstrap with the same code that accepts or rejects xDS, so the snapshot is
rendered as-is with its dynamic references made static:

* RDS: each HTTP connection manager gets its RouteConfiguration inline (`route_config`), an empty one if the
  snapshot does not have it;
* EDS: clusters become STATIC with their ClusterLoadAssignment inline (`load_assignment`);
* SDS: Secrets become `static_resources.secrets`; a Secret the snapshot only names (its material lives on
  the daemon's host) is stood in for by a throw-away certificate;
* certificate files: paths on the Envoy host stay as they are when that host is this machine, otherwise
  they are stood in for the same way (a CRL cannot be faked and is left out).

Resources are kept in their canonical JSON form (proto field names), and only the parts named above change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, Snapshot

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


@dataclass(frozen=True)
class TlsMaterial:
    """A throw-away certificate and its key (PEM), standing in for material only the Envoy host has."""

    certificate: str
    private_key: str


def resource_dicts(snapshot: Snapshot, type_url: str) -> dict[str, dict[str, Any]]:
    """The resources of one type as JSON dicts with proto field names (secrets unredacted: this never prints)."""
    return {
        name: json.loads(json_format.MessageToJson(r.message(), preserving_proto_field_name=True))
        for name, r in snapshot.of_type(type_url).items()
    }


def static_bootstrap(
    snapshot: Snapshot,
    fleet: str,
    runtime: dict[str, Any],
    material: Callable[[], TlsMaterial],
    files_are_local: bool,
    listeners: list[str] | None = None,
    clusters: list[str] | None = None,
    route_filter: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The bootstrap; `listeners`/`clusters` limit it to those names, `route_filter` may trim route configs."""
    routes = resource_dicts(snapshot, ROUTE)
    endpoints = resource_dicts(snapshot, ENDPOINT)
    chosen = [
        listener
        for name, listener in resource_dicts(snapshot, LISTENER).items()
        if listeners is None or name in listeners
    ]
    for listener in chosen:
        _inline_routes(listener, routes, route_filter)
    static_clusters = [
        _static_cluster(cluster, endpoints)
        for name, cluster in resource_dicts(snapshot, CLUSTER).items()
        if clusters is None or name in clusters
    ]
    secrets = resource_dicts(snapshot, SECRET)
    stand_in = _StandIn(material)
    for resource in [*chosen, *static_clusters]:
        _make_secrets_static(resource, secrets, stand_in)
        if not files_are_local:
            _replace_files(resource, stand_in)
    if not files_are_local:
        for secret in secrets.values():
            _replace_files(secret, stand_in)
    return {
        "node": {"id": "preflight", "cluster": fleet},
        "static_resources": {"listeners": chosen, "clusters": static_clusters, "secrets": list(secrets.values())},
        "layered_runtime": runtime,
    }


class _StandIn:
    """Creates the throw-away material only if some TLS setting needs it."""

    def __init__(self, material: Callable[[], TlsMaterial]) -> None:
        self._make = material
        self._material: TlsMaterial | None = None

    def get(self) -> TlsMaterial:
        if self._material is None:
            self._material = self._make()
        return self._material


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in list(value.values()):
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _inline_routes(
    listener: dict[str, Any],
    routes: dict[str, dict[str, Any]],
    route_filter: Callable[[str, dict[str, Any]], dict[str, Any]] | None,
) -> None:
    for node in _walk(listener):
        if node.get("@type") == HCM_TYPE and "rds" in node:
            name = node.pop("rds")["route_config_name"]
            # Over RDS a route to an unknown cluster is no error unless the route config says so; inline, the
            # default flips to an error. Keep the RDS meaning: a partial snapshot carries only some clusters.
            config = {"validate_clusters": False, **routes.get(name, {"name": name})}
            node["route_config"] = route_filter(name, config) if route_filter else config


def _static_cluster(cluster: dict[str, Any], endpoints: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if cluster.get("type") != "EDS":
        return cluster
    eds = cluster.pop("eds_cluster_config", {})
    name = eds.get("service_name") or cluster["name"]
    cluster["type"] = "STATIC"
    cluster["load_assignment"] = {**endpoints.get(name, {}), "cluster_name": name}
    return cluster


def _make_secrets_static(resource: dict[str, Any], secrets: dict[str, dict[str, Any]], stand_in: _StandIn) -> None:
    for node in _walk(resource):
        for config in node.get("tls_certificate_sds_secret_configs", []):
            _static_secret(config, secrets, stand_in, ca_only=False)
        for key in ("validation_context_sds_secret_config",):
            if key in node:
                _static_secret(node[key], secrets, stand_in, ca_only=True)


def _static_secret(
    config: dict[str, Any], secrets: dict[str, dict[str, Any]], stand_in: _StandIn, ca_only: bool
) -> None:
    config.pop("sds_config", None)  # a name alone refers to static_resources.secrets
    name = config["name"]
    if name in secrets:
        return
    material = stand_in.get()
    if ca_only:
        secrets[name] = {"name": name, "validation_context": {"trusted_ca": {"inline_string": material.certificate}}}
    else:
        secrets[name] = {
            "name": name,
            "tls_certificate": {
                "certificate_chain": {"inline_string": material.certificate},
                "private_key": {"inline_string": material.private_key},
            },
        }


def _replace_files(resource: dict[str, Any], stand_in: _StandIn) -> None:
    for node in _walk(resource):
        for key in ("certificate_chain", "trusted_ca", "private_key"):
            source = node.get(key)
            if isinstance(source, dict) and "filename" in source:
                material = stand_in.get()
                pem = material.private_key if key == "private_key" else material.certificate
                node[key] = {"inline_string": pem}
        if isinstance(node.get("crl"), dict) and "filename" in node["crl"]:
            del node["crl"]
