"""Small builders shared by the translators: config sources, durations, cluster names, SAN matchers, Any packing."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from reconciler.config.hosts import is_ip_address
from reconciler.config.model import ResolvedConfig
from reconciler.manifests.durations import Duration
from reconciler.manifests.model import Destination


def ads_source() -> config_source_pb2.ConfigSource:
    """Resources fetched over the same ADS stream, with Envoy's v3 resource API."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def duration(value: Duration) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value.nanos // 1_000_000_000, nanos=value.nanos % 1_000_000_000)


def set_duration(target: duration_pb2.Duration, value: Duration) -> None:
    """Write `value` into a message's Duration field (set even when zero): cheaper than building one and copying."""
    target.seconds, target.nanos = divmod(value.nanos, 1_000_000_000)


def seconds(value: float) -> duration_pb2.Duration:
    return duration(Duration(int(value * 1_000_000_000)))


def cluster_name(port: int, subset: str, host: str) -> str:
    """istiod's `outbound|<port>|<subset>|<host>`, so istioctl-style tooling reads our names too."""
    return f"outbound|{port}|{subset}|{host}"


def destination_port(config: ResolvedConfig, destination: Destination, listener_port: int) -> int:
    """istiod's port choice: the explicit port, else the service's only port, else the listener's port."""
    if destination.port is not None and destination.port.number:
        return destination.port.number
    service = config.services.get(destination.host)
    if service is not None and len(service.ports) == 1:
        return service.ports[0].number
    return listener_port


def destination_cluster(config: ResolvedConfig, destination: Destination, listener_port: int) -> str:
    return cluster_name(destination_port(config, destination, listener_port), destination.subset, destination.host)


def san_matcher(name: str) -> common_pb2.SubjectAltNameMatcher:
    """An exact match for an Istio `subjectAltNames` entry, typed by its shape (Istio's strings carry no type)."""
    san = common_pb2.SubjectAltNameMatcher
    if "://" in name:
        kind = san.URI
    elif "@" in name:
        kind = san.EMAIL
    elif is_ip_address(name):
        kind = san.IP_ADDRESS
    else:
        kind = san.DNS
    return san(san_type=kind, matcher=string_pb2.StringMatcher(exact=name))
