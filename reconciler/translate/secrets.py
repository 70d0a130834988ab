"""`credentialName` → SDS: the Secrets a fleet's TLS listeners reference, served over the ADS stream.

The key material never comes from git: the daemon reads it from a secrets folder on its own host
(`reconciler/source/credentials.py`) and hands it to the pure translation as `Credential`s. Names follow
istiod (`model/credentials`): the key pair of credential `x` is the Secret `kubernetes://x`, the CA that
verifies client certificates (MUTUAL) is `kubernetes://x-cacert`.

When no credentials are on hand at all (`validate`, `render` on a workstation), listeners still reference
the Secrets by name but none are emitted and nothing is reported: only the daemon knows the material.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from reconciler.diagnostics import Finding, Location, Severity
from reconciler.translate.common import ads_source

SDS_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"


@dataclass(frozen=True)
class Credential:
    """One credential's PEM material; a CA-only credential (a `<name>-cacert` folder) has no key pair."""

    certificate_chain: bytes = b""
    private_key: bytes = b""
    ca_certificate: bytes | None = None


@dataclass(frozen=True)
class SecretUse:
    """Where a Gateway references a credential, for findings."""

    location: Location
    resource: str


def sds_name(credential: str) -> str:
    return SDS_PREFIX + credential


def ca_sds_name(credential: str) -> str:
    return SDS_PREFIX + credential + CA_SUFFIX


def sds_secret_config(name: str) -> secret_pb2.SdsSecretConfig:
    # Over the same ADS stream as everything else (istiod's SDSAdsConfig); no initial_fetch_timeout
    # override, so a Secret that never arrives cannot hold a listener in warming forever.
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_source())


class SecretBook:
    """The Secrets one fleet's listeners reference, resolved against the credentials on hand."""

    def __init__(self, credentials: Mapping[str, Credential] | None) -> None:
        self._credentials = credentials
        self._secrets: dict[str, secret_pb2.Secret] = {}
        self.findings: list[Finding] = []

    def key_pair(self, credential: str, use: SecretUse) -> secret_pb2.SdsSecretConfig:
        name = sds_name(credential)
        if self._credentials is not None and name not in self._secrets:
            found = self._credentials.get(credential)
            if found is None or not (found.certificate_chain and found.private_key):
                self._report(use, credential, found)
            else:
                self._secrets[name] = secret_pb2.Secret(
                    name=name,
                    tls_certificate=common_pb2.TlsCertificate(
                        certificate_chain=base_pb2.DataSource(inline_bytes=found.certificate_chain),
                        private_key=base_pb2.DataSource(inline_bytes=found.private_key),
                    ),
                )
        return sds_secret_config(name)

    def client_ca(self, credential: str, use: SecretUse) -> secret_pb2.SdsSecretConfig:
        """The CA of `credential`: its own `ca.crt`, else a separate `<credential>-cacert` (as istiod)."""
        name = ca_sds_name(credential)
        if self._credentials is not None and name not in self._secrets:
            ca = self._ca_of(credential)
            if ca is None:
                self.findings.append(
                    Finding(
                        Severity.ERROR,
                        "credential-ca-not-found",
                        f"MUTUAL TLS needs the client CA of credential {credential!r}: put ca.crt in "
                        f"<secrets dir>/{credential}/ or in <secrets dir>/{credential}{CA_SUFFIX}/",
                        use.location,
                        use.resource,
                    )
                )
            else:
                self._secrets[name] = secret_pb2.Secret(
                    name=name,
                    validation_context=common_pb2.CertificateValidationContext(
                        trusted_ca=base_pb2.DataSource(inline_bytes=ca)
                    ),
                )
        return sds_secret_config(name)

    def _ca_of(self, credential: str) -> bytes | None:
        assert self._credentials is not None
        for candidate in (credential, credential + CA_SUFFIX):
            found = self._credentials.get(candidate)
            if found is not None and found.ca_certificate:
                return found.ca_certificate
        return None

    def _report(self, use: SecretUse, credential: str, found: Credential | None) -> None:
        if found is None:
            code = "credential-not-found"
            message = f"credential {credential!r} is not in the daemon's secrets folder"
        else:
            code = "credential-incomplete"
            message = f"credential {credential!r} has no certificate and private key in the daemon's secrets folder"
        self.findings.append(
            Finding(
                Severity.ERROR,
                code,
                f"{message}; expected <secrets dir>/{credential}/tls.crt and tls.key",
                use.location,
                use.resource,
            )
        )

    def resources(self) -> list[secret_pb2.Secret]:
        return [self._secrets[name] for name in sorted(self._secrets)]
