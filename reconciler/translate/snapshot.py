"""Snapshots: the immutable, content-addressed set of xDS resources one fleet member receives.

Each resource is serialized once (deterministically) when the snapshot is built; the bytes are what the
ADS server sends to every node of the fleet and what the state store persists. Versions are content
hashes, so the same manifests give the same versions on any replica and after any restart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

# Registers the typed configs nested in Any fields, so json_format can render them.
from reconciler.translate import protos as _protos  # noqa: F401

TYPE_PREFIX = "type.googleapis.com/"
CLUSTER = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# Make-before-break: clusters and their endpoints exist before listeners and routes point at them.
# Envoy asks for Secrets (SDS) only once a listener names them, so they come last.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
# Envoy subscribes to these by wildcard: a SotW response must hold all of them (absence means delete).
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
# Types that most fleets never have: they count in the snapshot version and in the rendering only when
# present, so fleets without TLS credentials keep the versions and the `render` output they always had.
OPTIONAL_TYPES = frozenset({SECRET})
SHORT_NAMES = {CLUSTER: "clusters", ENDPOINT: "endpoints", LISTENER: "listeners", ROUTE: "routes", SECRET: "secrets"}

MESSAGE_CLASSES: dict[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    SECRET: secret_pb2.Secret,
}
REDACTED = "[redacted]"


def content_digest(*parts: bytes) -> str:
    """A short, stable hash of `parts` in order: every snapshot and resource version is one of these.

    Each part is length-prefixed so different splits of the same bytes never collide; 16 hex characters
    (64 bits) are plenty to tell a fleet's revisions apart.
    """
    if len(parts) == 1:  # a resource's body, up to megabytes: hash it where it lies
        (part,) = parts
        h = hashlib.sha256(len(part).to_bytes(8, "big"))
        h.update(part)
    else:  # a version over thousands of short parts: one call instead of two per part
        h = hashlib.sha256(b"".join(piece for part in parts for piece in (len(part).to_bytes(8, "big"), part)))
    return h.hexdigest()[:16]


def type_url_of(message: Message) -> str:
    return TYPE_PREFIX + message.DESCRIPTOR.full_name


def resource_name(message: Message) -> str:
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return str(message.cluster_name)
    return str(message.name)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class XdsResource:
    type_url: str
    name: str
    body: bytes  # the serialized message (what goes in Any.value)
    digest: str
    # When the body was joined from parts (a route configuration: its own fields before and after its virtual
    # hosts' entries), those parts: the incremental preflight compares them instead of re-parsing megabytes.
    parts: tuple[bytes, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def of(cls, message: Message) -> XdsResource:
        body = message.SerializeToString(deterministic=True)
        return cls(type_url_of(message), resource_name(message), body, content_digest(body))

    def message(self) -> Message:
        return MESSAGE_CLASSES[self.type_url].FromString(self.body)


@dataclass(frozen=True)
class Snapshot:
    """Resources by type URL and name; `version` changes exactly when any resource's content does."""

    resources: Mapping[str, Mapping[str, XdsResource]]
    version: str
    type_versions: Mapping[str, str] = field(compare=False)

    @classmethod
    def build(cls, items: Iterable[Message | XdsResource]) -> Snapshot:
        """From messages, or resources already serialized (translation hands over cached bytes as they are)."""
        return cls.of_resources(m if isinstance(m, XdsResource) else XdsResource.of(m) for m in items)

    @classmethod
    def of_resources(cls, items: Iterable[XdsResource]) -> Snapshot:
        by_type: dict[str, dict[str, XdsResource]] = {t: {} for t in PUSH_ORDER}
        for item in items:
            if item.name in by_type[item.type_url]:
                raise ValueError(f"two {SHORT_NAMES[item.type_url]} are named {item.name!r}")
            by_type[item.type_url][item.name] = item
        frozen = {t: MappingProxyType(dict(sorted(v.items()))) for t, v in by_type.items()}
        type_versions = {
            t: content_digest(*(f"{r.name}={r.digest}".encode() for r in v.values())) for t, v in frozen.items()
        }
        # A cluster that changes only becomes active once Envoy gets a *new* endpoints response for it,
        # even with unchanged endpoints; tying the EDS version to the CDS version forces that resend.
        type_versions[ENDPOINT] = content_digest(type_versions[ENDPOINT].encode(), type_versions[CLUSTER].encode())
        version = content_digest(
            *(type_versions[t].encode() for t in PUSH_ORDER if t not in OPTIONAL_TYPES or frozen[t])
        )
        return cls(MappingProxyType(frozen), version, MappingProxyType(type_versions))

    @classmethod
    def empty(cls) -> Snapshot:
        return cls.of_resources(())

    def of_type(self, type_url: str) -> Mapping[str, XdsResource]:
        return self.resources.get(type_url, MappingProxyType({}))

    def all_resources(self) -> Iterable[XdsResource]:
        for type_url in PUSH_ORDER:
            yield from self.of_type(type_url).values()

    def count(self) -> int:
        return sum(len(v) for v in self.resources.values())

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form (proto3 JSON mapping), for `render`, `plan` and golden files.

        Private keys are redacted: this form is printed, diffed in pull requests and stored in logs.
        """
        out: dict[str, Any] = {"version": self.version}
        for type_url in PUSH_ORDER:
            resources = self.of_type(type_url)
            if type_url in OPTIONAL_TYPES and not resources:
                continue
            # Through JSON text, so nested Any fields become plain dicts; keys sorted, since map fields
            # (e.g. route metadata Structs) have no stable order of their own.
            out[SHORT_NAMES[type_url]] = [
                _redact_private_keys(json.loads(json_format.MessageToJson(r.message(), sort_keys=True)))
                for r in resources.values()
            ]
        return out


def _redact_private_keys(value: Any) -> Any:
    """Replace the inline material of every `privateKey` data source (file paths stay: they are not secret)."""
    if isinstance(value, list):
        return [_redact_private_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key == "privateKey" and isinstance(item, dict):
            item = {k: REDACTED if k in ("inlineBytes", "inlineString") else v for k, v in item.items()}
        out[key] = _redact_private_keys(item)
    return out
