"""Gateway `tls` settings → Envoy's DownstreamTlsContext, as istiod's `BuildListenerTLSContext` builds it.

Certificates come from one source: files on the Envoy host (`serverCertificate`/`privateKey`,
`tlsCertificates`) or credentials served over SDS (`credentialName`, `credentialNames`). istiod turns file
paths into SDS resources served by its node agent; fleets have no agent, so Envoy reads the files itself.
Istio's webhook rules for these settings (one certificate source, a CA for MUTUAL, known cipher names) are
checked by `validation.gateway` before translation runs.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import wrappers_pb2

from reconciler.config.model import BoundServer
from reconciler.config.servers import server_finding, server_location
from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.model import ServerTLSSettings, TLSCertificate
from reconciler.translate.common import san_matcher
from reconciler.translate.secrets import SecretBook, SecretUse

ALPN_HTTP = ("h2", "http/1.1")  # istiod's ALPN on every terminating gateway chain, HTTPS and TLS alike
CLIENT_VALIDATING_MODES = frozenset({"MUTUAL", "OPTIONAL_MUTUAL"})
TLS_VERSIONS = {
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}


def downstream_tls_context(
    bound: BoundServer, secrets: SecretBook, findings: list[Finding]
) -> tls_pb2.DownstreamTlsContext:
    """The TLS context of a terminating (SIMPLE, MUTUAL, OPTIONAL_MUTUAL) server."""
    tls = bound.server.tls
    assert tls is not None
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(alpn_protocols=ALPN_HTTP),
        require_client_certificate=wrappers_pb2.BoolValue(value=tls.mode == "MUTUAL"),
    )
    common = context.common_tls_context
    credentials = list(tls.credential_names) or ([tls.credential_name] if tls.credential_name else [])
    if credentials:
        _sds_certificates(bound, tls, credentials, secrets, common)
    else:
        _file_certificates(tls, common)
    if tls.subject_alt_names and tls.mode not in CLIENT_VALIDATING_MODES:
        findings.append(
            server_finding(
                bound,
                Severity.WARNING,
                "subject-alt-names-ignored",
                f"subjectAltNames check client certificates, which {tls.mode} TLS does not ask for; use MUTUAL",
                "tls",
                "subjectAltNames",
            )
        )
    params = _tls_parameters(bound, tls, findings)
    if params.ListFields():
        common.tls_params.CopyFrom(params)
    return context


def _sds_certificates(
    bound: BoundServer,
    tls: ServerTLSSettings,
    credentials: list[str],
    secrets: SecretBook,
    common: tls_pb2.CommonTlsContext,
) -> None:
    field = "credentialNames" if tls.credential_names else "credentialName"
    for index, credential in enumerate(credentials):
        path = ("tls", field, index) if tls.credential_names else ("tls", field)
        common.tls_certificate_sds_secret_configs.append(secrets.key_pair(credential, _use(bound, *path)))
    if tls.mode in CLIENT_VALIDATING_MODES:
        ca_credential = tls.ca_cert_credential_name or credentials[0]
        ca_path = ("tls", "caCertCredentialName") if tls.ca_cert_credential_name else ("tls", field)
        # Envoy merges the static checks (SANs, pins) into the CA that SDS delivers.
        combined = common.combined_validation_context
        combined.default_validation_context.CopyFrom(_client_checks(tls))
        combined.validation_context_sds_secret_config.CopyFrom(secrets.client_ca(ca_credential, _use(bound, *ca_path)))


def _file_certificates(tls: ServerTLSSettings, common: tls_pb2.CommonTlsContext) -> None:
    pairs = tls.tls_certificates or [TLSCertificate(tls.server_certificate, tls.private_key)]
    for pair in pairs:
        common.tls_certificates.append(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=pair.server_certificate),
                private_key=base_pb2.DataSource(filename=pair.private_key),
            )
        )
    if tls.mode in CLIENT_VALIDATING_MODES:
        checks = _client_checks(tls)
        checks.trusted_ca.filename = tls.ca_certificates
        if tls.ca_crl:
            checks.crl.filename = tls.ca_crl
        common.validation_context.CopyFrom(checks)


def _use(bound: BoundServer, *path: str | int) -> SecretUse:
    return SecretUse(server_location(bound, *path), bound.gateway.resource.ref)


def _client_checks(tls: ServerTLSSettings) -> common_pb2.CertificateValidationContext:
    checks = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=[san_matcher(name) for name in tls.subject_alt_names],
        verify_certificate_spki=tls.verify_certificate_spki,
        verify_certificate_hash=tls.verify_certificate_hash,
    )
    if tls.insecure_skip_verify:
        checks.trust_chain_verification = common_pb2.CertificateValidationContext.ACCEPT_UNTRUSTED
    return checks


def _tls_parameters(bound: BoundServer, tls: ServerTLSSettings, findings: list[Finding]) -> common_pb2.TlsParameters:
    params = common_pb2.TlsParameters()
    if tls.min_protocol_version in TLS_VERSIONS:
        params.tls_minimum_protocol_version = TLS_VERSIONS[tls.min_protocol_version]
    if tls.max_protocol_version in TLS_VERSIONS:
        params.tls_maximum_protocol_version = TLS_VERSIONS[tls.max_protocol_version]
        if (
            tls.min_protocol_version in TLS_VERSIONS
            and params.tls_minimum_protocol_version > params.tls_maximum_protocol_version
        ):
            findings.append(
                server_finding(
                    bound,
                    Severity.ERROR,
                    "tls-version-range",
                    f"minProtocolVersion {tls.min_protocol_version} is above "
                    f"maxProtocolVersion {tls.max_protocol_version}",
                    "tls",
                    "minProtocolVersion",
                )
            )
    params.cipher_suites.extend(_unique(tls.cipher_suites))
    return params


def _unique(names: list[str]) -> list[str]:
    # istiod's FilterCipherSuites drops repeats (validation warns about them); Envoy would NACK them.
    return list(dict.fromkeys(names))
