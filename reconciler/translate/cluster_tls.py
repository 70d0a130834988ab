"""DestinationRule `tls` (SIMPLE / MUTUAL with files on the Envoy host) → the cluster's upstream TLS socket.

istiod serves these files over SDS through its node agent; our fleets have no agent, so Envoy reads the
files named here itself. The rest follows istiod's constructUpstreamTLS: TLS 1.2 to 1.3, `sni` or else the
request's host (auto SNI), SAN checks from the rule (or the ServiceEntry's `subjectAltNames`), else from the
host too, and ALPN `h2` for HTTP/2 upstreams.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from reconciler.manifests.model import ClientTLSSettings
from reconciler.translate.cluster_pool import TlsOrigination
from reconciler.translate.common import pack, san_matcher

TLS_SOCKET = "envoy.transport_sockets.tls"
# istiod's "system" roots when `caCertificates` is empty: the Debian/Ubuntu/Alpine bundle (Envoy NACKs the
# cluster, naming this path, on hosts that keep it elsewhere; set caCertificates there).
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ORIGINATING_MODES = ("SIMPLE", "MUTUAL")


@dataclass(frozen=True)
class UpstreamTls:
    socket: base_pb2.TransportSocket
    origination: TlsOrigination


def upstream_tls(tls: ClientTLSSettings | None, service_sans: list[str], http2: bool) -> UpstreamTls | None:
    """None for DISABLE or no `tls`. ISTIO_MUTUAL and credentialName are rejected by validation."""
    if tls is None or tls.mode not in ORIGINATING_MODES:
        return None
    insecure = bool(tls.insecure_skip_verify)
    sans = tls.subject_alt_names or service_sans
    common = tls_pb2.CommonTlsContext(
        tls_params=common_pb2.TlsParameters(
            tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2,
            tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
        ),
        alpn_protocols=["h2"] if http2 else [],
    )
    if tls.mode == "MUTUAL":
        common.tls_certificates.append(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=tls.client_certificate),
                private_key=base_pb2.DataSource(filename=tls.private_key),
            )
        )
    if not insecure:
        validation = common.validation_context
        validation.trusted_ca.filename = tls.ca_certificates or SYSTEM_CA_BUNDLE
        validation.match_typed_subject_alt_names.extend(san_matcher(san) for san in sans)
        if tls.ca_crl:
            validation.crl.filename = tls.ca_crl
    context = tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=tls.sni)
    auto_sni = not tls.sni
    return UpstreamTls(
        socket=base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(context)),
        origination=TlsOrigination(auto_sni=auto_sni, auto_san_validation=auto_sni and not sans and not insecure),
    )
