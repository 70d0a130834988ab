"""Certificate and key files named in TLS settings: paths on the Envoy host, checked where that host is us.

A Gateway's `serverCertificate`/`privateKey`/`caCertificates` (and a DestinationRule's client TLS files) are
read by Envoy on its own machine. The validating machine can only say something useful about them when it
*is* that machine (the daemon beside its Envoys, or a CI image that mirrors the hosts), so the caller passes a
probe for the file system and the severity: an error when the paths are known to be local, a warning when
they merely might be. The probe keeps this module pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.loader import ManifestSet
from reconciler.manifests.model import ClientTLSSettings, DestinationRuleSpec, GatewaySpec, Resource, TrafficPolicy
from reconciler.validation.common import Path, finding_at

# (path, what the file must hold) → None when Envoy could load it, else why not ("does not exist", ...).
FileProbe = Callable[[str, str], str | None]
CERTIFICATE, PRIVATE_KEY, CRL = "certificate", "private key", "CRL"
_KINDS = {
    "serverCertificate": CERTIFICATE,
    "clientCertificate": CERTIFICATE,
    "caCertificates": CERTIFICATE,
    "privateKey": PRIVATE_KEY,
    "caCrl": CRL,
}


def check_certificate_files(manifests: ManifestSet, probe: FileProbe, severity: Severity) -> list[Finding]:
    findings = []
    for resource, path, file_path in _tls_files(manifests):
        problem = probe(file_path, _KINDS[str(path[-1])])
        if problem is not None:
            where = "on this machine" if severity is Severity.WARNING else "on the Envoy host"
            findings.append(
                finding_at(
                    resource,
                    path,
                    severity,
                    "certificate-file-unreadable",
                    f"{file_path} {problem} {where}; Envoy cannot load the TLS settings that name it",
                )
            )
    return findings


def _tls_files(manifests: ManifestSet) -> Iterator[tuple[Resource, Path, str]]:
    for resource in manifests.of_kind("Gateway"):
        spec: GatewaySpec = resource.spec
        for i, server in enumerate(spec.servers):
            tls = server.tls
            if tls is None or tls.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL"):
                continue
            base: Path = ("spec", "servers", i, "tls")
            for key, value in (
                ("serverCertificate", tls.server_certificate),
                ("privateKey", tls.private_key),
                ("caCertificates", tls.ca_certificates),
                ("caCrl", tls.ca_crl),
            ):
                if value:
                    yield resource, (*base, key), value
            for j, pair in enumerate(tls.tls_certificates):
                for key, value in (
                    ("serverCertificate", pair.server_certificate),
                    ("privateKey", pair.private_key),
                    ("caCertificates", pair.ca_certificates),
                ):
                    if value:
                        yield resource, (*base, "tlsCertificates", j, key), value
    for resource in manifests.of_kind("DestinationRule"):
        spec_dr: DestinationRuleSpec = resource.spec
        yield from _policy_files(resource, ("spec", "trafficPolicy"), spec_dr.traffic_policy)
        for i, subset in enumerate(spec_dr.subsets):
            yield from _policy_files(resource, ("spec", "subsets", i, "trafficPolicy"), subset.traffic_policy)


def _policy_files(resource: Resource, path: Path, policy: TrafficPolicy | None) -> Iterator[tuple[Resource, Path, str]]:
    if policy is None:
        return
    yield from _client_files(resource, (*path, "tls"), policy.tls)
    for i, port_policy in enumerate(policy.port_level_settings):
        yield from _client_files(resource, (*path, "portLevelSettings", i, "tls"), port_policy.tls)


def _client_files(
    resource: Resource, path: Path, tls: ClientTLSSettings | None
) -> Iterator[tuple[Resource, Path, str]]:
    if tls is None or tls.mode not in ("SIMPLE", "MUTUAL"):
        return
    for key, value in (
        ("clientCertificate", tls.client_certificate),
        ("privateKey", tls.private_key),
        ("caCertificates", tls.ca_certificates),
        ("caCrl", tls.ca_crl),
    ):
        if value:
            yield resource, (*path, key), value
