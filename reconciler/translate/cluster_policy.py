"""Which DestinationRule traffic policy governs one cluster, and the route hash policy that follows from it.

istiod's merge (`util.MergeSubsetTrafficPolicy`): a `portLevelSettings` entry for the cluster's port replaces
the policy it sits in wholesale (fields it omits fall back to defaults, not to the outer policy); then a
subset's policy overrides the destination-level one field by field, or wholesale when the subset has a
port-level entry for that port.

Routes read the same merged policy as clusters, so a route hashes exactly when its cluster is a hash ring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2 as rc

from reconciler.config import hosts
from reconciler.config.model import ResolvedConfig, ResolvedDestinationRule
from reconciler.manifests.model import ConsistentHashLB, Destination, DestinationRuleSpec, TrafficPolicy
from reconciler.translate.common import duration

_FIELDS = ("load_balancer", "connection_pool", "outlier_detection", "tls")


def _for_port(policy: TrafficPolicy | None, port: int) -> tuple[TrafficPolicy | None, bool]:
    """The policy that applies on `port`, and whether a port-level entry supplied it."""
    if policy is None:
        return None, False
    for setting in policy.port_level_settings:
        if setting.port is not None and setting.port.number == port:
            return TrafficPolicy(**{name: getattr(setting, name) for name in _FIELDS}), True
    if not policy.port_level_settings:  # already what the copy below would be: skip the copy (hot path)
        return policy, False
    return dataclasses.replace(policy, port_level_settings=[]), False


def effective_policy(rule: DestinationRuleSpec | None, subset: str, port: int) -> TrafficPolicy | None:
    """The traffic policy of cluster `outbound|port|subset|host` under `rule` (None: istiod's defaults)."""
    if rule is None:
        return None
    base, _ = _for_port(rule.traffic_policy, port)
    chosen = next((s for s in rule.subsets if s.name == subset), None) if subset else None
    override, wholesale = _for_port(chosen.traffic_policy if chosen else None, port)
    if override is None:
        return base
    if base is None:
        return override
    merged = {
        name: getattr(override, name) if wholesale or getattr(override, name) is not None else getattr(base, name)
        for name in _FIELDS
    }
    return TrafficPolicy(**merged)


def rule_for(config: ResolvedConfig, host: str) -> ResolvedDestinationRule | None:
    """The rule for `host`: the one naming it exactly, else the most specific wildcard covering it (istiod)."""
    exact = config.destination_rules.get(host)
    if exact is not None:
        return exact
    covering = next((h for h in config.wildcard_rule_hosts if hosts.subset_of(host, h)), None)
    return config.destination_rules[covering] if covering is not None else None


def consistent_hash(config: ResolvedConfig, destination: Destination, port: int) -> ConsistentHashLB | None:
    """The consistent-hash setting of the cluster `destination` routes to on service port `port`."""
    rule = rule_for(config, destination.host)
    policy = effective_policy(rule.spec, destination.subset, port) if rule is not None else None
    balancer = policy.load_balancer if policy is not None else None
    return balancer.consistent_hash if balancer is not None else None


def hash_policies(
    config: ResolvedConfig, targets: Iterable[tuple[Destination, int]]
) -> list[rc.RouteAction.HashPolicy]:
    """The route's `hash_policy`: one per distinct hash key among the consistent-hash settings of the
    destinations, each given with its service port (`common.destination_port`)."""
    out: list[rc.RouteAction.HashPolicy] = []
    for destination, port in targets:
        hashed = consistent_hash(config, destination, port)
        policy = _hash_policy(hashed) if hashed else None
        # istiod appends one per destination; a repeat of the same key adds nothing but noise.
        if policy is not None and policy not in out:
            out.append(policy)
    return out


def _hash_policy(hashed: ConsistentHashLB) -> rc.RouteAction.HashPolicy | None:
    if hashed.http_header_name:
        return rc.RouteAction.HashPolicy(header=rc.RouteAction.HashPolicy.Header(header_name=hashed.http_header_name))
    if hashed.http_cookie is not None:
        cookie = rc.RouteAction.HashPolicy.Cookie(name=hashed.http_cookie.name, path=hashed.http_cookie.path)
        if hashed.http_cookie.ttl is not None:
            # With a TTL Envoy sets the cookie itself when the request has none, so the session sticks.
            cookie.ttl.CopyFrom(duration(hashed.http_cookie.ttl))
        return rc.RouteAction.HashPolicy(cookie=cookie)
    if hashed.use_source_ip:
        return rc.RouteAction.HashPolicy(
            connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(source_ip=True)
        )
    if hashed.http_query_parameter_name:
        return rc.RouteAction.HashPolicy(
            query_parameter=rc.RouteAction.HashPolicy.QueryParameter(name=hashed.http_query_parameter_name)
        )
    return None  # no hash key: validation reports it; the ring then spreads requests at random
