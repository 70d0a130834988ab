"""Snapshots: the immutable, content-addressed set of xDS resources one fleet member receives.

Each resource is serialized once (deterministically) when it is translated (a route configuration assembled
from its virtual hosts' bytes is joined when first read); the bytes are what the ADS server sends to every node
of the fleet and what the state store persists. Versions are content hashes (`resource_digest`), so the same
manifests give the same versions on any replica and after any restart.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress
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
from reconciler.protowire import fields
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
# A body this large is hashed field by field (its version is the digest of its top-level fields' digests), so that
# a body joined from fields whose digests are kept (translate.route_configs: each virtual host's) gets its version
# without hashing megabytes again. Smaller bodies, hashed whole in under a millisecond, keep the plain digest.
FIELDWISE_DIGEST_MIN_BYTES = 1 << 20


def content_digest(*parts: bytes) -> str:
    """A short, stable hash of `parts` in order: every snapshot and resource version is one of these.

    Each part is length-prefixed so different splits of the same bytes never collide; 16 hex characters
    (64 bits) are plenty to tell a fleet's revisions apart.
    """
    if len(parts) == 1:  # a resource's body, up to megabytes: hash it where it lies
        return _whole_digest(parts, len(parts[0]))
    # a version over thousands of short parts: one call instead of two per part
    return hashlib.sha256(b"".join([len(part).to_bytes(8, "big") + part for part in parts])).hexdigest()[:16]


def _whole_digest(pieces: Iterable[bytes], size: int) -> str:
    """`content_digest` of the one part the pieces (`size` bytes in all) join to, without joining them."""
    h = hashlib.sha256(size.to_bytes(8, "big"))
    for piece in pieces:
        h.update(piece)
    return h.hexdigest()[:16]


def field_digest(field: bytes) -> bytes:
    """One top-level field's digest (its whole encoding: tag, length, payload), for `resource_digest`."""
    return hashlib.sha256(field).digest()


def resource_digest(body: bytes) -> str:
    """A resource's version: a function of its bytes alone, however the body was assembled."""
    if len(body) < FIELDWISE_DIGEST_MIN_BYTES:
        return _whole_digest((body,), len(body))  # content_digest(body), one call less for thousands of clusters
    return _fieldwise_digest([field_digest(field) for _, field in fields(body)])


def assembled_digest(parts: Sequence[bytes], field_digests: Sequence[bytes]) -> str:
    """`resource_digest` of the body `parts` join to, without joining them: `field_digests` are the `field_digest`
    of each top-level field of that body, in order (a caller that keeps them spares hashing megabytes)."""
    size = sum(map(len, parts))
    if size < FIELDWISE_DIGEST_MIN_BYTES:
        return _whole_digest(parts, size)
    return _fieldwise_digest(field_digests)


def _fieldwise_digest(field_digests: Iterable[bytes]) -> str:
    return hashlib.sha256(b"".join(field_digests)).hexdigest()[:16]


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
        return cls(type_url_of(message), resource_name(message), body, resource_digest(body))

    @classmethod
    def joined_on_read(cls, type_url: str, name: str, digest: str, parts: tuple[bytes, ...]) -> XdsResource:
        """A resource whose body is the join of `parts`, made when first read: translation hands over megabytes
        without copying them (their version comes from the parts' digests), and a reader that can work from the
        parts need not wait for the copy."""
        resource = cls(type_url, name, b"", digest, parts)
        del resource.__dict__["body"]  # until joined, reads reach _JoinedOnRead
        return resource

    @property
    def pieces(self) -> tuple[bytes, ...]:
        """The body as the pieces it joins from: a writer that concatenates it with other bytes (a response)
        copies megabytes once, from the pieces, instead of joining them first."""
        return self.parts or (self.body,)

    def message(self) -> Message:
        return MESSAGE_CLASSES[self.type_url].FromString(self.body)

    def same_body(self, other: XdsResource) -> bool:
        """Whether the bodies are equal; told from the parts when both were joined from the same parts (a route
        configuration renewed, or built again with the same virtual hosts), which spares joining megabytes."""
        if self.parts and self.parts == other.parts:  # mostly the very same entries: compared by identity first
            return True
        return self.body == other.body


class _JoinedOnRead:
    """`XdsResource.body` of a resource `joined_on_read`, until read: the join then becomes the instance's own
    `body`, which hides this (a non-data descriptor), so later reads are plain attribute reads."""

    def __get__(self, resource: XdsResource | None, owner: type | None = None) -> bytes:
        if resource is None:
            raise AttributeError("body")
        body = resource.__dict__["body"] = b"".join(resource.parts)  # two threads may both join: the same bytes
        return body


# Put in place after `dataclass`, which leaves a field without a default no class attribute; with setattr, as mypy
# would check an assignment against the field's type.
setattr(XdsResource, "body", _JoinedOnRead())  # noqa: B010


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
        type_versions = {t: _type_digest(v) for t, v in frozen.items()}
        type_versions[ENDPOINT] = _endpoint_version(type_versions[ENDPOINT], type_versions[CLUSTER])
        return cls(MappingProxyType(frozen), _snapshot_version(frozen, type_versions), MappingProxyType(type_versions))

    def replacing(self, items: Iterable[XdsResource]) -> Snapshot:
        """This snapshot with `items` in place of its resources of the same type and name: what `of_resources`
        gives for the resources so replaced, versions and all, while only the types of `items` are hashed again."""
        changed: dict[str, dict[str, XdsResource]] = {}
        for item in items:
            if item.name not in self.resources[item.type_url]:  # a new name would need its place in the order
                raise KeyError(f"no {SHORT_NAMES[item.type_url]} named {item.name!r} to replace")
            changed.setdefault(item.type_url, dict(self.resources[item.type_url]))[item.name] = item
        frozen = {t: MappingProxyType(changed[t]) if t in changed else v for t, v in self.resources.items()}
        type_versions = dict(self.type_versions)
        for type_url in changed.keys() - {ENDPOINT}:
            type_versions[type_url] = _type_digest(frozen[type_url])
        if CLUSTER in changed or ENDPOINT in changed:
            type_versions[ENDPOINT] = _endpoint_version(_type_digest(frozen[ENDPOINT]), type_versions[CLUSTER])
        version = _snapshot_version(frozen, type_versions)
        return Snapshot(MappingProxyType(frozen), version, MappingProxyType(type_versions))

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


def renew_snapshot(
    groups: Sequence[Sequence[XdsResource]], before: tuple[Sequence[Sequence[XdsResource]], Snapshot] | None
) -> Snapshot:
    """`Snapshot.of_resources` of the resources of every group, in order.

    `before` — the groups of an earlier snapshot, and that snapshot — is patched instead when each group is the
    very same object as before or holds the same types and names in the same order, most of them the very same
    objects (a revision that changed a few resources): only what differs is looked at, and the earlier snapshot
    itself comes back when nothing does.
    """
    if before is not None and len(before[0]) == len(groups):
        earlier, snapshot = before
        replaced: list[XdsResource] = []
        for group, earlier_group in zip(groups, earlier, strict=True):
            in_place = [] if group is earlier_group else _replaced(earlier_group, group)
            if in_place is None:
                break
            replaced += in_place
        else:
            return snapshot.replacing(replaced) if replaced else snapshot
    return Snapshot.of_resources(chain.from_iterable(groups))


def _replaced(earlier: Sequence[XdsResource], items: Sequence[XdsResource]) -> list[XdsResource] | None:
    """The items whose content differs from `earlier`'s at the same place, or None when a place holds another
    resource (type or name) or the lengths differ. The identity diff runs at C speed over thousands of items."""
    if len(earlier) != len(items):
        return None
    replaced = []
    for i in compress(range(len(items)), map(operator.is_not, items, earlier)):
        item, before = items[i], earlier[i]
        if item.type_url != before.type_url or item.name != before.name:
            return None
        if item.digest != before.digest or not item.same_body(before):  # the digest tells most apart at once
            replaced.append(item)
    return replaced


def _type_digest(resources: Mapping[str, XdsResource]) -> str:
    return content_digest(*(f"{r.name}={r.digest}".encode() for r in resources.values()))


def _endpoint_version(endpoints: str, clusters: str) -> str:
    # A cluster that changes only becomes active once Envoy gets a *new* endpoints response for it,
    # even with unchanged endpoints; tying the EDS version to the CDS version forces that resend.
    return content_digest(endpoints.encode(), clusters.encode())


def _snapshot_version(resources: Mapping[str, Mapping[str, XdsResource]], type_versions: Mapping[str, str]) -> str:
    return content_digest(*(type_versions[t].encode() for t in PUSH_ORDER if t not in OPTIONAL_TYPES or resources[t]))


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
