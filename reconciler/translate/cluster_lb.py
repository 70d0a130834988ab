"""DestinationRule `loadBalancer` and `outlierDetection` → how a cluster picks hosts and ejects failing ones."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2, outlier_detection_pb2
from google.protobuf import wrappers_pb2

from reconciler.manifests.model import LoadBalancerSettings, OutlierDetection
from reconciler.translate.common import duration

DEFAULT_MINIMUM_RING_SIZE = 1024  # Envoy's default, which istiod writes out for the deprecated form
FULL_ENFORCEMENT = 100


def apply_load_balancer(cluster: cluster_pb2.Cluster, balancer: LoadBalancerSettings | None) -> None:
    """`simple` UNSPECIFIED/LEAST_CONN/LEAST_REQUEST → LEAST_REQUEST (istiod's default), else as named;
    `consistentHash` → RING_HASH or MAGLEV (the route side is in cluster_policy.hash_policies)."""
    hashed = balancer.consistent_hash if balancer else None
    if hashed is not None:
        if hashed.maglev is not None:
            cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
            if hashed.maglev.table_size:
                cluster.maglev_lb_config.table_size.value = hashed.maglev.table_size
        elif hashed.ring_hash is not None:
            cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
            if hashed.ring_hash.minimum_ring_size:
                cluster.ring_hash_lb_config.minimum_ring_size.value = hashed.ring_hash.minimum_ring_size
        else:
            cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
            cluster.ring_hash_lb_config.minimum_ring_size.value = hashed.minimum_ring_size or DEFAULT_MINIMUM_RING_SIZE
        return
    simple = balancer.simple if balancer else None
    warmup = balancer.warmup_duration_secs if balancer else None
    if simple == "RANDOM":
        cluster.lb_policy = cluster_pb2.Cluster.RANDOM
    elif simple == "ROUND_ROBIN":
        cluster.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
        if warmup is not None:
            cluster.round_robin_lb_config.slow_start_config.slow_start_window.CopyFrom(duration(warmup))
    else:  # PASSTHROUGH never gets here: validation rejects it on a gateway
        cluster.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
        if warmup is not None:
            cluster.least_request_lb_config.slow_start_config.slow_start_window.CopyFrom(duration(warmup))


def apply_outlier_detection(cluster: cluster_pb2.Cluster, outlier: OutlierDetection | None) -> None:
    if outlier is None:
        return
    out = outlier_detection_pb2.OutlierDetection(enforcing_success_rate=_u32(0))  # istiod: success-rate off
    if outlier.consecutive_5xx_errors is not None:
        out.consecutive_5xx.CopyFrom(_u32(outlier.consecutive_5xx_errors))
        out.enforcing_consecutive_5xx.CopyFrom(_u32(_enforcing(outlier.consecutive_5xx_errors)))
    if outlier.consecutive_gateway_errors is not None:
        out.consecutive_gateway_failure.CopyFrom(_u32(outlier.consecutive_gateway_errors))
        out.enforcing_consecutive_gateway_failure.CopyFrom(_u32(_enforcing(outlier.consecutive_gateway_errors)))
    if outlier.interval is not None:
        out.interval.CopyFrom(duration(outlier.interval))
    if outlier.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(outlier.base_ejection_time))
    if outlier.max_ejection_percent > 0:
        out.max_ejection_percent.CopyFrom(_u32(outlier.max_ejection_percent))
    if outlier.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if outlier.consecutive_local_origin_failures:
            out.consecutive_local_origin_failure.CopyFrom(_u32(outlier.consecutive_local_origin_failures))
            out.enforcing_consecutive_local_origin_failure.CopyFrom(_u32(FULL_ENFORCEMENT))
        out.enforcing_local_origin_success_rate.CopyFrom(_u32(0))
    cluster.outlier_detection.CopyFrom(out)
    # istiod writes minHealthPercent (default 0) as the panic threshold: with few hosts Envoy's default of 50%
    # would send traffic to ejected hosts again as soon as half of them are out.
    cluster.common_lb_config.healthy_panic_threshold.value = float(outlier.min_health_percent)


def _enforcing(threshold: int) -> int:
    """A threshold of 0 disables that detector; any other value is enforced every time (istiod)."""
    return FULL_ENFORCEMENT if threshold > 0 else 0


def _u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)
