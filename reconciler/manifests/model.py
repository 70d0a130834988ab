"""The typed manifest model: Istio networking kinds and our Fleet, as the user wrote them (unresolved).

These dataclasses double as the schema (see `schema.py`): a field without a default is required, and the
YAML key is the camelCase field name unless `metadata={"yaml": ...}` says otherwise. Names are not resolved
here (short hosts, gateway references); that is the `config` stage's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from reconciler.diagnostics import Location
from reconciler.manifests.durations import Duration

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1alpha3", "v1beta1", "v1")  # one schema: v1 and v1beta1 alias v1alpha3
FLEET_API_VERSION = "reconciler/v1"
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class ObjectMeta:
    open_schema: ClassVar[bool] = True  # Kubernetes metadata carries many fields we neither need nor police

    name: str
    namespace: str = DEFAULT_NAMESPACE
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- shared


@dataclass(frozen=True)
class StringMatch:
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


@dataclass(frozen=True)
class Percent:
    value: float = 0.0


@dataclass(frozen=True)
class PortSelector:
    number: int = 0


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str = ""
    port: PortSelector | None = None


# ---------------------------------------------------------------------------------------------- Gateway

Protocol = Literal["HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "REDIS", "MYSQL", "UDP"]
TLSMode = Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]
TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]

# How gateways serve each protocol: HTTP ones through the HTTP connection manager, HTTPS and TLS on
# SNI-matched filter chains; istiod proxies the TCP ones as opaque TCP (their protocol filters are off on
# gateways). Every other protocol is not served by a gateway.
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
TCP_PROTOCOLS = frozenset({"TCP", "MONGO", "MYSQL", "REDIS"})
PASSTHROUGH_MODES = frozenset({"PASSTHROUGH", "AUTO_PASSTHROUGH"})
TERMINATING_MODES = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"})
# A `bind` or an endpoint `address` with this prefix names a unix domain socket (which has no port).
UNIX_PREFIX = "unix://"


@dataclass(frozen=True)
class Port:
    number: int
    protocol: Protocol
    name: str = ""
    target_port: int | None = None


@dataclass(frozen=True)
class TLSCertificate:
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""


@dataclass(frozen=True)
class ServerTLSSettings:
    https_redirect: bool = False
    mode: TLSMode = "PASSTHROUGH"  # Istio's default when `tls` is present
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    ca_crl: str = ""
    credential_name: str = ""
    credential_names: list[str] = field(default_factory=list)
    ca_cert_credential_name: str = ""
    tls_certificates: list[TLSCertificate] = field(default_factory=list)
    subject_alt_names: list[str] = field(default_factory=list)
    verify_certificate_spki: list[str] = field(default_factory=list)
    verify_certificate_hash: list[str] = field(default_factory=list)
    min_protocol_version: TLSVersion = "TLS_AUTO"
    max_protocol_version: TLSVersion = "TLS_AUTO"
    cipher_suites: list[str] = field(default_factory=list)
    insecure_skip_verify: bool | None = None


@dataclass(frozen=True)
class Server:
    port: Port
    hosts: list[str]
    bind: str = ""
    tls: ServerTLSSettings | None = None
    name: str = ""
    default_endpoint: str = ""


@dataclass(frozen=True)
class GatewaySpec:
    servers: list[Server] = field(default_factory=list)
    selector: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- VirtualService


@dataclass(frozen=True)
class HTTPMatchRequest:
    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = field(default_factory=dict)
    port: int = 0
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: list[str] = field(default_factory=list)
    query_params: dict[str, StringMatch] = field(default_factory=dict)
    ignore_uri_case: bool = False
    without_headers: dict[str, StringMatch] = field(default_factory=dict)
    source_namespace: str = ""
    stat_prefix: str = ""


@dataclass(frozen=True)
class HeaderOperations:
    set: dict[str, str] = field(default_factory=dict)
    add: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Headers:
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


@dataclass(frozen=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int = 0
    headers: Headers | None = None


@dataclass(frozen=True)
class HTTPRedirect:
    uri: str = ""
    authority: str = ""
    port: int = 0
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str = ""
    redirect_code: int = 0


@dataclass(frozen=True)
class HTTPBody:
    string: str | None = None
    bytes: str | None = None  # base64, as in the proto's JSON form


@dataclass(frozen=True)
class HTTPDirectResponse:
    status: int
    body: HTTPBody | None = None


@dataclass(frozen=True)
class RegexRewrite:
    match: str = ""
    rewrite: str = ""


@dataclass(frozen=True)
class HTTPRewrite:
    uri: str = ""
    authority: str = ""
    uri_regex_rewrite: RegexRewrite | None = None


@dataclass(frozen=True)
class HTTPRetry:
    attempts: int = 0
    per_try_timeout: Duration | None = None
    retry_on: str = ""
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None


@dataclass(frozen=True)
class FaultDelay:
    fixed_delay: Duration | None = None
    percentage: Percent | None = None
    percent: int = 0


@dataclass(frozen=True)
class FaultAbort:
    http_status: int = 0
    grpc_status: str = ""
    percentage: Percent | None = None


@dataclass(frozen=True)
class HTTPFaultInjection:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True)
class HTTPMirrorPolicy:
    destination: Destination
    percentage: Percent | None = None


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: list[StringMatch] = field(default_factory=list)
    allow_origin: list[str] = field(default_factory=list)
    allow_methods: list[str] = field(default_factory=list)
    allow_headers: list[str] = field(default_factory=list)
    expose_headers: list[str] = field(default_factory=list)
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] = "UNSPECIFIED"


@dataclass(frozen=True)
class Delegate:
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class HTTPRoute:
    name: str = ""
    match: list[HTTPMatchRequest] = field(default_factory=list)
    route: list[HTTPRouteDestination] = field(default_factory=list)
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] = field(default_factory=list)
    mirror_percentage: Percent | None = None
    mirror_percent: int | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int = 0


@dataclass(frozen=True)
class TLSMatchAttributes:
    sni_hosts: list[str]
    destination_subnets: list[str] = field(default_factory=list)
    port: int = 0
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: list[str] = field(default_factory=list)
    source_namespace: str = ""


@dataclass(frozen=True)
class TLSRoute:
    match: list[TLSMatchAttributes]
    route: list[RouteDestination] = field(default_factory=list)


@dataclass(frozen=True)
class L4MatchAttributes:
    destination_subnets: list[str] = field(default_factory=list)
    port: int = 0
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: list[str] = field(default_factory=list)
    source_namespace: str = ""


@dataclass(frozen=True)
class TCPRoute:
    match: list[L4MatchAttributes] = field(default_factory=list)
    route: list[RouteDestination] = field(default_factory=list)


@dataclass(frozen=True)
class VirtualServiceSpec:
    hosts: list[str] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)
    http: list[HTTPRoute] = field(default_factory=list)
    tls: list[TLSRoute] = field(default_factory=list)
    tcp: list[TCPRoute] = field(default_factory=list)
    export_to: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- DestinationRule


@dataclass(frozen=True)
class HTTPCookie:
    name: str
    path: str = ""
    ttl: Duration | None = None


@dataclass(frozen=True)
class RingHash:
    minimum_ring_size: int = 0


@dataclass(frozen=True)
class MagLev:
    table_size: int = 0


@dataclass(frozen=True)
class ConsistentHashLB:
    http_header_name: str = ""
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool = False
    http_query_parameter_name: str = ""
    minimum_ring_size: int = 0
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None


@dataclass(frozen=True)
class LoadBalancerSettings:
    simple: Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"] | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: dict[str, Any] | None = None
    warmup_duration_secs: Duration | None = None


@dataclass(frozen=True)
class TCPKeepalive:
    probes: int = 0
    time: Duration | None = None
    interval: Duration | None = None


@dataclass(frozen=True)
class TCPSettings:
    max_connections: int = 0
    connect_timeout: Duration | None = None
    tcp_keepalive: TCPKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


@dataclass(frozen=True)
class HTTPSettings:
    http1_max_pending_requests: int = 0
    http2_max_requests: int = 0
    max_requests_per_connection: int = 0
    max_retries: int = 0
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] = "DEFAULT"
    use_client_protocol: bool = False
    max_concurrent_streams: int = 0


@dataclass(frozen=True)
class ConnectionPoolSettings:
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = field(default=None, metadata={"yaml": "consecutive5xxErrors"})
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int = 0
    min_health_percent: int = 0


@dataclass(frozen=True)
class ClientTLSSettings:
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] = "DISABLE"
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    credential_name: str = ""
    subject_alt_names: list[str] = field(default_factory=list)
    sni: str = ""
    insecure_skip_verify: bool | None = None
    ca_crl: str = ""


@dataclass(frozen=True)
class PortTrafficPolicy:
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True)
class TrafficPolicy:
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] = field(default_factory=list)


@dataclass(frozen=True)
class Subset:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True)
class DestinationRuleSpec:
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = field(default_factory=list)
    export_to: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- ServiceEntry


@dataclass(frozen=True)
class ServicePort:
    number: int
    name: str
    protocol: Protocol | None = None
    target_port: int | None = None


@dataclass(frozen=True)
class WorkloadEntry:
    address: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    network: str = ""
    locality: str = ""
    weight: int = 0
    service_account: str = ""


@dataclass(frozen=True)
class ServiceEntrySpec:
    hosts: list[str]
    addresses: list[str] = field(default_factory=list)
    ports: list[ServicePort] = field(default_factory=list)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] = "NONE"
    endpoints: list[WorkloadEntry] = field(default_factory=list)
    export_to: list[str] = field(default_factory=list)
    subject_alt_names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- Fleet


@dataclass(frozen=True)
class Probe:
    name: str
    port: int
    path: str = "/"
    host: str = ""
    expect_status: int = 200


@dataclass(frozen=True)
class RolloutPolicy:
    waves: list[int | str] = field(default_factory=lambda: ["100%"])
    bake: Duration = field(default_factory=lambda: Duration(0))
    ack_timeout: Duration = field(default_factory=lambda: Duration(10_000_000_000))
    max_error_rate: float = 0.05
    probes: list[Probe] = field(default_factory=list)


@dataclass(frozen=True)
class FleetSpec:
    selector: dict[str, str] = field(default_factory=dict)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)


# ---------------------------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class Resource:
    """A manifest document: kind, metadata and typed spec, plus where it came from."""

    kind: str
    api_version: str
    metadata: ObjectMeta
    spec: Any
    location: Location
    positions: Mapping[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)
    # `spec` again if the loader found every value in it plain (manifests/schema.py says what that is), so the
    # value checks have nothing to find in it; None when unknown. The very object rather than a flag, so that a
    # Resource made from this one with another spec (dataclasses.replace) is not vouched for.
    plain_spec: Any = field(default=None, compare=False, repr=False)

    def locate(self, *path: str | int) -> Location:
        """Where a field of this document sits (its closest written ancestor if the field is absent)."""
        key = tuple(path)
        while key and key not in self.positions:
            key = key[:-1]
        line, column = self.positions.get(key, (self.location.line, self.location.column))
        return Location(self.location.file, line, column)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def ref(self) -> str:
        """`Kind namespace/name`, how findings and logs name a resource."""
        return f"{self.kind} {self.namespace}/{self.name}"


SPEC_TYPES: dict[str, type] = {
    "Gateway": GatewaySpec,
    "VirtualService": VirtualServiceSpec,
    "DestinationRule": DestinationRuleSpec,
    "ServiceEntry": ServiceEntrySpec,
    "Fleet": FleetSpec,
}
