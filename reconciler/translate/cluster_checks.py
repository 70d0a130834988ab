"""DestinationRules and ServiceEntries: what istiod drops or mangles silently, or Envoy would NACK, said up front.

Run by the validation stage (reconciler/validation), beside the translators whose input it checks.
"""

from __future__ import annotations

from collections.abc import Iterator

from reconciler.config import hosts
from reconciler.config.model import ResolvedConfig, Service
from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.loader import ManifestSet
from reconciler.manifests.model import (
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
from reconciler.translate.cluster_endpoints import UNIX_PREFIX, selected_endpoints

Path = tuple[str | int, ...]
MAX_RING_SIZE = 8_388_608  # Envoy's limit on ring_hash_lb_config.minimum_ring_size


def check_upstreams(manifests: ManifestSet, config: ResolvedConfig) -> list[Finding]:
    findings: list[Finding] = []
    for entry in manifests.of_kind("ServiceEntry"):
        findings.extend(_check_service_entry(entry))
    first_policy: dict[str, Resource] = {}
    for rule in sorted(manifests.of_kind("DestinationRule"), key=lambda r: (r.name, r.namespace)):
        findings.extend(_check_destination_rule(rule, config, first_policy))
    return findings


# ------------------------------------------------------------------------------------------ ServiceEntry


def _check_service_entry(entry: Resource) -> Iterator[Finding]:
    spec: ServiceEntrySpec = entry.spec
    at = _Reporter(entry)
    if spec.resolution == "DYNAMIC_DNS":
        yield at(
            ("spec", "resolution"),
            Severity.ERROR,
            "unsupported-resolution",
            "DYNAMIC_DNS needs Envoy's dynamic forward proxy, which gateway fleets do not run; use DNS",
        )
    if spec.resolution == "NONE" and not spec.endpoints:
        yield at(
            ("spec", "resolution"),
            Severity.WARNING,
            "no-endpoints",
            "resolution NONE forwards to the original destination, which a gateway does not have (istiod falls "
            "back to EDS); without endpoints every request gets 503. Use DNS, or STATIC with endpoints",
        )
    if spec.resolution == "STATIC" and not spec.endpoints:
        yield at(
            ("spec", "resolution"), Severity.WARNING, "no-endpoints", "STATIC without endpoints: every request gets 503"
        )
    if spec.resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
        yield at(
            ("spec", "endpoints"),
            Severity.ERROR,
            "too-many-endpoints",
            "DNS_ROUND_ROBIN resolves one name (Envoy LOGICAL_DNS); use DNS for several endpoints",
        )
    # Address and port-name rules are Istio's own (validation/services.py); this is what a gateway adds.
    for index, endpoint in enumerate(spec.endpoints):
        if endpoint.address.startswith(UNIX_PREFIX) and spec.resolution not in ("STATIC", "NONE"):
            yield at(
                ("spec", "endpoints", index, "address"),
                Severity.ERROR,
                "unsupported-endpoint",
                f"a unix socket cannot be resolved with {spec.resolution}; use resolution STATIC",
            )


# ------------------------------------------------------------------------------------------ DestinationRule


def _check_destination_rule(
    rule: Resource, config: ResolvedConfig, first_policy: dict[str, Resource]
) -> Iterator[Finding]:
    spec: DestinationRuleSpec = rule.spec
    at = _Reporter(rule)
    merged = next((r for r in config.destination_rules.values() if any(source is rule for source in r.sources)), None)
    host = merged.host if merged else spec.host
    service = config.services.get(host)
    if service is None and not any(hosts.subset_of(h, host) for h in config.services):
        yield at(
            ("spec", "host"),
            Severity.WARNING,
            "destination-rule-host-not-found",
            f"no ServiceEntry declares {host!r}, so this rule applies to nothing",
        )
    if spec.traffic_policy is not None:
        earlier = first_policy.setdefault(host, rule)
        if earlier is not rule:
            yield at(
                ("spec", "trafficPolicy"),
                Severity.WARNING,
                "destination-rule-policy-ignored",
                f"{earlier.ref} already sets the trafficPolicy of {host}; when rules merge the first one wins "
                "(Istio), so this one is ignored",
            )
    if merged is not None:
        for index, subset in enumerate(spec.subsets):
            winner = next(s for s in merged.spec.subsets if s.name == subset.name)
            if winner != subset:  # a same-named, different subset of an earlier rule
                yield at(
                    ("spec", "subsets", index, "name"),
                    Severity.WARNING,
                    "subset-ignored",
                    f"subset {subset.name!r} of {host} is defined by another rule first; this one is ignored",
                )
            elif service is not None and _has_endpoints(service) and not selected_endpoints(service, subset.labels):
                yield at(
                    ("spec", "subsets", index, "labels"),
                    Severity.WARNING,
                    "subset-selects-no-endpoints",
                    f"no endpoint of {host} has labels {subset.labels}; requests to subset {subset.name!r} get 503",
                )
    for path, policy in _policies(spec):
        yield from _check_policy(at, path, policy, service)


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
    at: _Reporter, path: Path, policy: TrafficPolicy | PortTrafficPolicy, service: Service | None
) -> Iterator[Finding]:
    if isinstance(policy, PortTrafficPolicy):
        if policy.port is None or not policy.port.number:
            yield at(path, Severity.ERROR, "missing-field", "a portLevelSettings entry needs port.number")
        elif service is not None and service.port(policy.port.number) is None:
            ports = ", ".join(str(p.number) for p in service.ports)
            yield at(
                (*path, "port"),
                Severity.WARNING,
                "port-level-setting-unused",
                f"{service.host} has no port {policy.port.number} (ports: {ports}); this entry applies to nothing",
            )
    if policy.load_balancer is not None:
        yield from _check_load_balancer(at, (*path, "loadBalancer"), policy.load_balancer)
    if policy.outlier_detection is not None:
        yield from _check_outlier(at, (*path, "outlierDetection"), policy.outlier_detection)
    if policy.tls is not None:
        yield from _check_tls(at, (*path, "tls"), policy.tls)


def _check_load_balancer(at: _Reporter, path: Path, balancer: LoadBalancerSettings) -> Iterator[Finding]:
    if balancer.simple is not None and balancer.consistent_hash is not None:
        yield at(
            path,
            Severity.ERROR,
            "conflicting-fields",
            "set either `simple` or `consistentHash`, not both (Istio's API allows one)",
        )
    if balancer.simple == "PASSTHROUGH":
        yield at(
            (*path, "simple"),
            Severity.ERROR,
            "unsupported-load-balancer",
            "PASSTHROUGH forwards to the connection's original destination, which a gateway does not have; "
            "use ROUND_ROBIN, LEAST_REQUEST, RANDOM or consistentHash",
        )
    if balancer.simple == "LEAST_CONN":
        yield at(
            (*path, "simple"),
            Severity.WARNING,
            "deprecated-field",
            "LEAST_CONN is deprecated and means LEAST_REQUEST; write LEAST_REQUEST",
        )
    if balancer.locality_lb_setting is not None:
        yield at(
            (*path, "localityLbSetting"),
            Severity.WARNING,
            "unsupported-field",
            "localityLbSetting is not applied: a gateway fleet declares no locality of its own to prefer",
        )
    if balancer.consistent_hash is not None:
        yield from _check_consistent_hash(at, (*path, "consistentHash"), balancer.consistent_hash)


def _check_consistent_hash(at: _Reporter, path: Path, hashed: ConsistentHashLB) -> Iterator[Finding]:
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
        yield at(
            path,
            Severity.WARNING,
            "consistent-hash-without-key",
            "no hash key (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName): "
            "requests spread at random and nothing sticks",
        )
    if len(keys) > 1:
        yield at(path, Severity.ERROR, "conflicting-fields", f"set one hash key, not {' and '.join(keys)}")
    if hashed.ring_hash is not None and hashed.maglev is not None:
        yield at(path, Severity.ERROR, "conflicting-fields", "set either `ringHash` or `maglev`, not both")
    if hashed.maglev is not None and hashed.maglev.table_size and not _is_prime(hashed.maglev.table_size):
        yield at(
            (*path, "maglev", "tableSize"),
            Severity.ERROR,
            "invalid-maglev-table-size",
            f"{hashed.maglev.table_size} is not a prime number, which Envoy requires (e.g. 65537)",
        )
    ring = hashed.ring_hash.minimum_ring_size if hashed.ring_hash else hashed.minimum_ring_size
    if ring > MAX_RING_SIZE:
        yield at(path, Severity.ERROR, "invalid-ring-size", f"the minimum ring size is at most {MAX_RING_SIZE}")


def _check_outlier(at: _Reporter, path: Path, outlier: OutlierDetection) -> Iterator[Finding]:
    if outlier.consecutive_local_origin_failures and not outlier.split_external_local_origin_errors:
        yield at(
            (*path, "consecutiveLocalOriginFailures"),
            Severity.WARNING,
            "ineffective-field",
            "consecutiveLocalOriginFailures only counts when splitExternalLocalOriginErrors is true",
        )


def _check_tls(at: _Reporter, path: Path, tls: ClientTLSSettings) -> Iterator[Finding]:
    if tls.mode == "ISTIO_MUTUAL":
        yield at(
            (*path, "mode"),
            Severity.ERROR,
            "unsupported-tls-mode",
            "ISTIO_MUTUAL needs Istio's mesh identity, which gateway fleets do not have; use MUTUAL with files",
        )
    if tls.credential_name:
        yield at(
            (*path, "credentialName"),
            Severity.ERROR,
            "unsupported-field",
            "credentialName is not supported for upstream TLS; use clientCertificate, privateKey and "
            "caCertificates (files on the Envoy host)",
        )
    if tls.mode == "MUTUAL" and not tls.credential_name and not (tls.client_certificate and tls.private_key):
        yield at(
            (*path, "mode"),
            Severity.ERROR,
            "missing-client-certificate",
            "MUTUAL needs clientCertificate and privateKey (istiod would silently send plaintext instead)",
        )
    if tls.mode == "SIMPLE" and (tls.client_certificate or tls.private_key):
        yield at(
            (*path, "mode"),
            Severity.WARNING,
            "ineffective-field",
            "SIMPLE presents no client certificate; clientCertificate/privateKey take effect with MUTUAL",
        )
    if tls.insecure_skip_verify and (tls.ca_certificates or tls.subject_alt_names):
        yield at(
            (*path, "insecureSkipVerify"),
            Severity.WARNING,
            "ineffective-field",
            "insecureSkipVerify turns off verification, so caCertificates and subjectAltNames are ignored",
        )


# ------------------------------------------------------------------------------------------ helpers


class _Reporter:
    """Findings about one resource, located at a field path."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    def __call__(self, path: Path, severity: Severity, code: str, message: str) -> Finding:
        return Finding(severity, code, message, self.resource.locate(*path), self.resource.ref)


def _is_prime(number: int) -> bool:
    if number < 2:
        return False
    return all(number % d for d in range(2, int(number**0.5) + 1))


def _has_endpoints(service: Service) -> bool:
    """Whether subsets have anything to select from (a DNS entry without endpoints resolves its host)."""
    return bool(service.endpoints) or service.resolution.startswith("DNS")
