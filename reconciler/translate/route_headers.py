"""VirtualService `headers` (route level and per destination) → Envoy header operations (istiod's
TranslateHeadersOperations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envoy.config.core.v3 import base_pb2

from reconciler.manifests.model import HeaderOperations, Headers

AUTHORITY_HEADERS = (":authority", "host")


def is_authority(name: str) -> bool:
    return name.lower() in AUTHORITY_HEADERS


def is_internal(name: str) -> bool:
    """Pseudo headers and `host` cannot be changed by header operations (Envoy ignores or rejects them)."""
    return name.startswith(":") or name.lower() == "host"


@dataclass(frozen=True)
class HeaderOps:
    request_add: list[base_pb2.HeaderValueOption] = field(default_factory=list)
    request_remove: list[str] = field(default_factory=list)
    response_add: list[base_pb2.HeaderValueOption] = field(default_factory=list)
    response_remove: list[str] = field(default_factory=list)
    authority: str = ""  # `:authority`/`host` in request set/add: a host rewrite, not a header operation

    def apply(self, target: Any) -> None:
        """Append to a Route or a WeightedCluster.ClusterWeight (both carry the same four fields)."""
        # Most routes have no header operations; even an empty extend costs time on every route.
        if self.request_add:
            target.request_headers_to_add.extend(self.request_add)
        if self.request_remove:
            target.request_headers_to_remove.extend(self.request_remove)
        if self.response_add:
            target.response_headers_to_add.extend(self.response_add)
        if self.response_remove:
            target.response_headers_to_remove.extend(self.response_remove)


NO_HEADER_OPS = HeaderOps()  # shared: nothing mutates a HeaderOps' lists


def header_ops(headers: Headers | None) -> HeaderOps:
    if headers is None:
        return NO_HEADER_OPS
    request = headers.request or HeaderOperations()
    response = headers.response or HeaderOperations()
    set_authority = _authority(request.set)
    return HeaderOps(
        request_add=_options(request.set, overwrite=True) + _options(request.add, overwrite=False),
        request_remove=[name for name in request.remove if not is_internal(name)],
        response_add=_options(response.set, overwrite=True) + _options(response.add, overwrite=False),
        response_remove=[name for name in response.remove if not is_internal(name)],
        authority=set_authority or _authority(request.add),  # `set` wins over `add`
    )


def _authority(values: dict[str, str]) -> str:
    return next((value for name, value in reversed(values.items()) if is_authority(name)), "")


def _options(values: dict[str, str], overwrite: bool) -> list[base_pb2.HeaderValueOption]:
    action = (
        base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        if overwrite
        else base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    )
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=values[name]), append_action=action)
        for name in sorted(values)
        if not is_internal(name)
    ]
