"""DestinationRules and ServiceEntries: what istiod drops or mangles silently, or Envoy would NACK, said up front.

Istio's own rules for these kinds are in `services.py`; these are what a gateway fleet adds to them.
"""

from __future__ import annotations

from collections.abc import Iterator

from reconciler.config import hosts
from reconciler.config.model import Service
from reconciler.diagnostics import Finding
from reconciler.manifests.model import (
    UNIX_PREFIX,
    ClientTLSSettings,
    ConsistentHashLB,
    DestinationRuleSpec,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    Resource,
    ServiceEntrySpec,
    TrafficPolicy,
)
from reconciler.validation.common import Path, ResourceReport
from reconciler.validation.index import SERVICE_HOSTS, InputName, RepoIndex, host_input
from reconciler.validation.services import IP_RESOLUTIONS

MAX_RING_SIZE = 8_388_608  # Envoy's limit on ring_hash_lb_config.minimum_ring_size


# ------------------------------------------------------------------------------------------ ServiceEntry


def check_service_entry(entry: Resource) -> list[Finding]:
    """Reads nothing but the ServiceEntry."""
    report = ResourceReport(entry)
    spec: ServiceEntrySpec = entry.spec
    if spec.resolution == "DYNAMIC_DNS":
        report.error(
            ("spec", "resolution"),
            "unsupported-resolution",
            "DYNAMIC_DNS needs Envoy's dynamic forward proxy, which gateway fleets do not run; use DNS",
        )
    if spec.resolution == "NONE" and not spec.endpoints:
        report.warning(
            ("spec", "resolution"),
            "no-endpoints",
            "resolution NONE forwards to the original destination, which a gateway does not have (istiod falls "
            "back to EDS); without endpoints every request gets 503. Use DNS, or STATIC with endpoints",
        )
    if spec.resolution == "STATIC" and not spec.endpoints:
        report.warning(("spec", "resolution"), "no-endpoints", "STATIC without endpoints: every request gets 503")
    if spec.resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
        report.error(
            ("spec", "endpoints"),
            "too-many-endpoints",
            "DNS_ROUND_ROBIN resolves one name (Envoy LOGICAL_DNS); use DNS for several endpoints",
        )
    # Address and port-name rules are Istio's own (validation/services.py); this is what a gateway adds.
    for index, endpoint in enumerate(spec.endpoints):
        if endpoint.address.startswith(UNIX_PREFIX) and spec.resolution not in IP_RESOLUTIONS:
            report.error(
                ("spec", "endpoints", index, "address"),
                "unsupported-endpoint",
                f"a unix socket cannot be resolved with {spec.resolution}; use resolution STATIC",
            )
    return report.findings


# ------------------------------------------------------------------------------------------ DestinationRule


def check_destination_rule(rule: Resource, index: RepoIndex) -> list[Finding]:
    report = ResourceReport(rule)
    spec: DestinationRuleSpec = rule.spec
    merged = index.merged_rule(rule)
    host = merged.host
    service = index.services.get(host)
    if not index.has_service_under(host):
        report.warning(
            ("spec", "host"),
            "destination-rule-host-not-found",
            f"no ServiceEntry declares {host!r}, so this rule applies to nothing",
        )
    if spec.traffic_policy is not None:
        # Rules merge in the order resolve gives `sources`, so the first of them with a policy is the one used.
        earlier = next(source for source in merged.sources if source.spec.traffic_policy is not None)
        if earlier is not rule:
            report.warning(
                ("spec", "trafficPolicy"),
                "destination-rule-policy-ignored",
                f"{earlier.ref} already sets the trafficPolicy of {host}; when rules merge the first one wins "
                "(Istio), so this one is ignored",
            )
    for position, subset in enumerate(spec.subsets):
        winner = next(s for s in merged.spec.subsets if s.name == subset.name)
        if winner != subset:  # a same-named, different subset of an earlier rule
            report.warning(
                ("spec", "subsets", position, "name"),
                "subset-ignored",
                f"subset {subset.name!r} of {host} is defined by another rule first; this one is ignored",
            )
        elif service is not None and _has_endpoints(service) and not service.selected_endpoints(subset.labels):
            report.warning(
                ("spec", "subsets", position, "labels"),
                "subset-selects-no-endpoints",
                f"no endpoint of {host} has labels {subset.labels}; requests to subset {subset.name!r} get 503",
            )
    for path, policy in _policies(spec):
        _check_policy(report, path, policy, service)
    return report.findings


def destination_rule_read(host: str) -> tuple[InputName, ...]:
    """What `check_destination_rule` looks up besides the rule, for a rule merged under `host`."""
    return (host_input(host), SERVICE_HOSTS) if hosts.is_wildcard(host) else (host_input(host),)


def _policies(spec: DestinationRuleSpec) -> Iterator[tuple[Path, TrafficPolicy | PortTrafficPolicy]]:
    """Every traffic policy of the rule with its path: top level, per port, per subset, per subset port."""
    owners: list[tuple[Path, TrafficPolicy | None]] = [(("spec", "trafficPolicy"), spec.traffic_policy)]
    owners += [(("spec", "subsets", i, "trafficPolicy"), s.traffic_policy) for i, s in enumerate(spec.subsets)]
    for path, policy in owners:
        if policy is None:
            continue
        yield path, policy
        for index, port_policy in enumerate(policy.port_level_settings):
            yield (*path, "portLevelSettings", index), port_policy


def _check_policy(
    report: ResourceReport, path: Path, policy: TrafficPolicy | PortTrafficPolicy, service: Service | None
) -> None:
    if isinstance(policy, PortTrafficPolicy):
        if policy.port is None or not policy.port.number:
            report.error(path, "missing-field", "a portLevelSettings entry needs port.number")
        elif service is not None and service.port(policy.port.number) is None:
            ports = ", ".join(str(p.number) for p in service.ports)
            report.warning(
                (*path, "port"),
                "port-level-setting-unused",
                f"{service.host} has no port {policy.port.number} (ports: {ports}); this entry applies to nothing",
            )
    if policy.load_balancer is not None:
        _check_load_balancer(report, (*path, "loadBalancer"), policy.load_balancer)
    if policy.outlier_detection is not None:
        _check_outlier(report, (*path, "outlierDetection"), policy.outlier_detection)
    if policy.tls is not None:
        _check_tls(report, (*path, "tls"), policy.tls)


def _check_load_balancer(report: ResourceReport, path: Path, balancer: LoadBalancerSettings) -> None:
    if balancer.simple is not None and balancer.consistent_hash is not None:
        report.error(
            path,
            "conflicting-fields",
            "set either `simple` or `consistentHash`, not both (Istio's API allows one)",
        )
    if balancer.simple == "PASSTHROUGH":
        report.error(
            (*path, "simple"),
            "unsupported-load-balancer",
            "PASSTHROUGH forwards to the connection's original destination, which a gateway does not have; "
            "use ROUND_ROBIN, LEAST_REQUEST, RANDOM or consistentHash",
        )
    if balancer.simple == "LEAST_CONN":
        report.warning(
            (*path, "simple"),
            "deprecated-field",
            "LEAST_CONN is deprecated and means LEAST_REQUEST; write LEAST_REQUEST",
        )
    if balancer.locality_lb_setting is not None:
        report.warning(
            (*path, "localityLbSetting"),
            "unsupported-field",
            "localityLbSetting is not applied: a gateway fleet declares no locality of its own to prefer",
        )
    if balancer.consistent_hash is not None:
        _check_consistent_hash(report, (*path, "consistentHash"), balancer.consistent_hash)


def _check_consistent_hash(report: ResourceReport, path: Path, hashed: ConsistentHashLB) -> None:
    keys = [
        name
        for name, is_set in (
            ("httpHeaderName", bool(hashed.http_header_name)),
            ("httpCookie", hashed.http_cookie is not None),
            ("useSourceIp", hashed.use_source_ip),
            ("httpQueryParameterName", bool(hashed.http_query_parameter_name)),
        )
        if is_set
    ]
    if not keys:
        report.warning(
            path,
            "consistent-hash-without-key",
            "no hash key (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName): "
            "requests spread at random and nothing sticks",
        )
    if len(keys) > 1:
        report.error(path, "conflicting-fields", f"set one hash key, not {' and '.join(keys)}")
    if hashed.ring_hash is not None and hashed.maglev is not None:
        report.error(path, "conflicting-fields", "set either `ringHash` or `maglev`, not both")
    if hashed.maglev is not None and hashed.maglev.table_size and not _is_prime(hashed.maglev.table_size):
        report.error(
            (*path, "maglev", "tableSize"),
            "invalid-maglev-table-size",
            f"{hashed.maglev.table_size} is not a prime number, which Envoy requires (e.g. 65537)",
        )
    ring = hashed.ring_hash.minimum_ring_size if hashed.ring_hash else hashed.minimum_ring_size
    if ring > MAX_RING_SIZE:
        report.error(path, "invalid-ring-size", f"the minimum ring size is at most {MAX_RING_SIZE}")


def _check_outlier(report: ResourceReport, path: Path, outlier: OutlierDetection) -> None:
    if outlier.consecutive_local_origin_failures and not outlier.split_external_local_origin_errors:
        report.warning(
            (*path, "consecutiveLocalOriginFailures"),
            "ineffective-field",
            "consecutiveLocalOriginFailures only counts when splitExternalLocalOriginErrors is true",
        )


def _check_tls(report: ResourceReport, path: Path, tls: ClientTLSSettings) -> None:
    if tls.mode == "ISTIO_MUTUAL":
        report.error(
            (*path, "mode"),
            "unsupported-tls-mode",
            "ISTIO_MUTUAL needs Istio's mesh identity, which gateway fleets do not have; use MUTUAL with files",
        )
    if tls.credential_name:
        report.error(
            (*path, "credentialName"),
            "unsupported-field",
            "credentialName is not supported for upstream TLS; use clientCertificate, privateKey and "
            "caCertificates (files on the Envoy host)",
        )
    if tls.mode == "MUTUAL" and not tls.credential_name and not (tls.client_certificate and tls.private_key):
        report.error(
            (*path, "mode"),
            "missing-client-certificate",
            "MUTUAL needs clientCertificate and privateKey (istiod would silently send plaintext instead)",
        )
    if tls.mode == "SIMPLE" and (tls.client_certificate or tls.private_key):
        report.warning(
            (*path, "mode"),
            "ineffective-field",
            "SIMPLE presents no client certificate; clientCertificate/privateKey take effect with MUTUAL",
        )
    if tls.insecure_skip_verify and (tls.ca_certificates or tls.subject_alt_names):
        report.warning(
            (*path, "insecureSkipVerify"),
            "ineffective-field",
            "insecureSkipVerify turns off verification, so caCertificates and subjectAltNames are ignored",
        )


# ------------------------------------------------------------------------------------------ helpers


def _is_prime(number: int) -> bool:
    if number < 2:
        return False
    return all(number % d for d in range(2, int(number**0.5) + 1))


def _has_endpoints(service: Service) -> bool:
    """Whether subsets have anything to select from (a DNS entry without endpoints resolves its host)."""
    return bool(service.endpoints) or service.resolution.startswith("DNS")
