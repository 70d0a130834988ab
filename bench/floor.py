"""The protobuf floor: the Envoy resources of a synthetic repo, built straight from its plain data with xds-protos.

No YAML, no schema, no validation, no intermediate model: one tight loop per resource kind that constructs
the same messages the pipeline emits for the synthetic shape (same names, fields and values, checked by
`bench/run.py`, which reports how many resources come out byte-identical) and serializes each once. This is
what building the resources costs in Python at all; the pipeline's time over it is our overhead.
"""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message

from bench.synthetic import SERVICE_NAMESPACE, SUBSETS, Match, Rule, Service, SyntheticRepo, VirtualService

UNLIMITED = 2**32 - 1
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


def fleet_messages(repo: SyntheticRepo, fleet: str, bind: str = "0.0.0.0") -> Iterator[Message]:
    """Every resource a member of `fleet` receives."""
    for service in repo.services:
        for subset in ("", *SUBSETS):
            name = f"outbound|{service.port}|{subset}|{service.host}"
            yield _cluster(name, service, subset)
            yield _load_assignment(name, service, subset)
    ports = sorted({g.port for g in repo.gateways if g.fleet == fleet})
    refs_by_port = {p: {g.ref for g in repo.gateways if g.fleet == fleet and g.port == p} for p in ports}
    for port in ports:
        refs = refs_by_port[port]
        bound = sorted((vs for vs in repo.virtual_services if refs.intersection(vs.gateways)), key=lambda v: v.host)
        yield _listener(port, bind)
        yield route_config(port, bound)


def serialize_fleet(repo: SyntheticRepo, fleet: str) -> list[bytes]:
    """Construct and serialize (deterministically, as the snapshot does) every resource of `fleet`."""
    return [m.SerializeToString(deterministic=True) for m in fleet_messages(repo, fleet)]


# ---------------------------------------------------------------------------------------------- clusters


def _cluster(name: str, service: Service, subset: str) -> cluster_pb2.Cluster:
    pool = service.connection_pool
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=_u32(100 if pool else UNLIMITED),
        max_pending_requests=_u32(64 if pool else UNLIMITED),
        max_requests=_u32(UNLIMITED),
        max_retries=_u32(5 if pool else UNLIMITED),
        track_remaining=True,
    )
    source = f"/apis/networking.istio.io/v1/namespaces/{SERVICE_NAMESPACE}/destination-rule/{service.name}"
    fields = {"config": struct_pb2.Value(string_value=source)}
    if subset:
        fields["subset"] = struct_pb2.Value(string_value=subset)
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        connect_timeout=duration_pb2.Duration(seconds=2 if pool else 10),
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds]),
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
        metadata=base_pb2.Metadata(filter_metadata={"istio": struct_pb2.Struct(fields=fields)}),
    )


def _load_assignment(name: str, service: Service, subset: str) -> endpoint_pb2.ClusterLoadAssignment:
    endpoints = [
        ec.LbEndpoint(
            endpoint=ec.Endpoint(
                address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))
            )
        )
        for address, port, version in service.endpoints
        if not subset or version == subset
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[ec.LocalityLbEndpoints(lb_endpoints=endpoints)]
    )


# ---------------------------------------------------------------------------------------------- listeners


def _listener(port: int, bind: str) -> listener_pb2.Listener:
    name = f"0.0.0.0_{port}"
    manager = hcm.HttpConnectionManager(
        stat_prefix=f"outbound_{name}",
        codec_type=hcm.HttpConnectionManager.AUTO,
        rds=hcm.Rds(config_source=_ads(), route_config_name=f"http.{port}"),
        http_filters=[
            hcm.HttpFilter(name="envoy.filters.http.fault", typed_config=_pack(fault_pb2.HTTPFault())),
            hcm.HttpFilter(name="envoy.filters.http.cors", typed_config=_pack(cors_pb2.Cors())),
            hcm.HttpFilter(name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router())),
        ],
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        normalize_path=wrappers_pb2.BoolValue(value=True),
        path_with_escaped_slashes_action=hcm.HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[hcm.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )
    chain = listener_components_pb2.FilterChain(
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager", typed_config=_pack(manager)
            )
        ]
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=bind, port_value=port)),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[chain],
    )


# ---------------------------------------------------------------------------------------------- routes


def route_config(port: int, bound: list[VirtualService]) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=f"http.{port}",
        virtual_hosts=[virtual_host(vs, port) for vs in bound],
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        ignore_port_in_host_matching=True,
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=1024 * 1024),
    )


def virtual_host(vs: VirtualService, port: int) -> rc.VirtualHost:
    """One VirtualService's virtual host: what VHDS or a per-host split would send for a one-VS change."""
    source = f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/{vs.name}"
    metadata = base_pb2.Metadata(
        filter_metadata={"istio": struct_pb2.Struct(fields={"config": struct_pb2.Value(string_value=source)})}
    )
    return rc.VirtualHost(
        name=f"{vs.host}:{port}",
        domains=[vs.host],
        include_request_attempt_count=True,
        routes=[_route(rule, port, metadata) for rule in vs.rules],
    )


def _route(rule: Rule, port: int, metadata: base_pb2.Metadata) -> rc.Route:
    timeout = _duration(rule.timeout)
    action = rc.RouteAction(timeout=timeout, max_grpc_timeout=timeout, retry_policy=_retry(rule))
    if rule.rewrite_uri:
        action.prefix_rewrite = rule.rewrite_uri
    if len(rule.destinations) == 1:
        only = rule.destinations[0]
        action.cluster = f"outbound|80|{only.subset}|{only.host}"
    else:
        action.weighted_clusters.clusters.extend(
            rc.WeightedCluster.ClusterWeight(name=f"outbound|80|{d.subset}|{d.host}", weight=_u32(d.weight))
            for d in rule.destinations
        )
    return rc.Route(name=rule.name, match=_match(rule.match), metadata=metadata, route=action)


def _match(match: Match | None) -> rc.RouteMatch:
    if match is None:
        return rc.RouteMatch(prefix="/")
    out = rc.RouteMatch(case_sensitive=wrappers_pb2.BoolValue(value=not match.ignore_case))
    if match.path_kind == "exact":
        out.path = match.path
    elif match.path_kind == "regex":
        out.safe_regex.regex = match.path
    else:
        out.prefix = match.path
    out.headers.extend(
        rc.HeaderMatcher(name=name, string_match=_string(kind, value)) for name, kind, value in sorted(match.headers)
    )
    if match.method:
        out.headers.append(rc.HeaderMatcher(name=":method", string_match=_string("exact", match.method)))
    out.query_parameters.extend(
        rc.QueryParameterMatcher(name=name, string_match=_string(kind, value)) for name, kind, value in match.query
    )
    return out


def _retry(rule: Rule) -> rc.RetryPolicy:
    retries = rule.retries
    policy = rc.RetryPolicy(
        retry_on=retries.retry_on if retries else DEFAULT_RETRY_ON,
        num_retries=_u32(retries.attempts if retries else 2),
        host_selection_retry_max_attempts=5,
        retry_host_predicate=[
            rc.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=_pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
    )
    if retries is not None:
        policy.per_try_timeout.CopyFrom(_duration(retries.per_try_timeout))
    return policy


# ---------------------------------------------------------------------------------------------- helpers


def _string(kind: str, value: str) -> string_pb2.StringMatcher:
    if kind == "regex":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    return string_pb2.StringMatcher(**{kind: value})


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.ApiVersion.V3
    )


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _duration(text: str) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(text.removesuffix("s")) if text else 0)


def _u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)
