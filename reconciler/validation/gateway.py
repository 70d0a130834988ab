"""Istio's Gateway rules (ValidateGateway, validateServer, validateServerPort/Bind, validateTLSOptions)."""

from __future__ import annotations

from reconciler.manifests.model import (
    HTTP_PROTOCOLS,
    PASSTHROUGH_MODES,
    TERMINATING_MODES,
    TLS_PROTOCOLS,
    UNIX_PREFIX,
    Server,
    ServerTLSSettings,
)
from reconciler.validation.common import Path, ResourceReport
from reconciler.validation.names import gateway_host_errors, ip_error

# The cipher suite names Envoy's BoringSSL accepts (istio pkg/config/security ValidCipherSuites).
CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-PSK-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-PSK-AES128-CBC-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "ECDHE-PSK-AES256-CBC-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    }
)


def check_gateway(report: ResourceReport) -> None:
    servers: list[Server] = report.resource.spec.servers
    if not servers:
        report.error(("spec", "servers"), "gateway-no-servers", "a Gateway needs at least one server")
    port_names: dict[str, int] = {}
    for i, server in enumerate(servers):
        path = ("spec", "servers", i)
        _check_server(report, server, path)
        name = server.port.name
        if name in port_names:
            report.error(
                (*path, "port", "name"),
                "duplicate-port-name",
                f"port name {name!r} is already used by server #{port_names[name]}; port names must be unique",
                [report.resource.locate("spec", "servers", port_names[name], "port", "name")],
            )
        port_names.setdefault(name, i)
        if server.tls is not None and server.tls.https_redirect and server.port.protocol not in HTTP_PROTOCOLS:
            report.warning(
                (*path, "tls", "httpsRedirect"),
                "https-redirect-not-http",
                "tls.httpsRedirect only has an effect on HTTP servers",
            )


def _check_server(report: ResourceReport, server: Server, path: Path) -> None:
    if not server.hosts:
        report.error((*path, "hosts"), "server-no-hosts", "a server needs at least one host (use '*' for any)")
    for j, host in enumerate(server.hosts):
        problems = gateway_host_errors(host)
        if problems:  # the first says enough; the others restate it
            report.error((*path, "hosts", j), "invalid-host", problems[0])
    port_ok = _check_port(report, server, path)
    _check_bind(report, server, path)
    if server.tls is not None:
        _check_tls(report, server.tls, (*path, "tls"))
    if not port_ok:
        return
    protocol = server.port.protocol
    if protocol in TLS_PROTOCOLS and server.tls is None:
        report.error((*path, "port", "protocol"), "tls-required", f"a {protocol} server needs TLS settings (tls:)")
    elif protocol not in TLS_PROTOCOLS and server.tls is not None:
        tls = server.tls
        redirect_only = tls.mode in PASSTHROUGH_MODES and not (
            tls.ca_certificates or tls.private_key or tls.server_certificate
        )
        if protocol not in HTTP_PROTOCOLS:
            report.error((*path, "tls"), "tls-not-allowed", f"a {protocol} server cannot have TLS settings")
        elif not redirect_only:
            report.error(
                (*path, "tls"),
                "tls-not-allowed",
                "a plain-text HTTP server cannot have TLS settings except httpsRedirect; use protocol HTTPS",
            )


def _check_port(report: ResourceReport, server: Server, path: Path) -> bool:
    port = server.port
    ok = True
    # A unix-socket server has port 0; every other server needs a real port.
    if (port.number > 0 or not server.bind.startswith(UNIX_PREFIX)) and not 1 <= port.number <= 65535:
        report.error((*path, "port", "number"), "invalid-port", f"port {port.number} is not in 1..65535")
        ok = False
    if port.target_port:
        report.error((*path, "port", "targetPort"), "target-port-ignored", "targetPort has no effect on Gateways")
        ok = False
    if not port.name:
        report.error((*path, "port"), "port-name-required", "the server's port needs a name")
        ok = False
    return ok


def _check_bind(report: ResourceReport, server: Server, path: Path) -> None:
    bind = server.bind
    if bind.startswith(UNIX_PREFIX):
        socket = bind[len(UNIX_PREFIX) :]
        if not socket or not (socket.startswith("@") or (socket.startswith("/") and not socket.endswith("/"))):
            report.error((*path, "bind"), "invalid-bind", f"{socket!r} is not an absolute path to a socket file")
        if server.port.number != 0:
            report.error((*path, "port", "number"), "invalid-port", "a unix domain socket server needs port 0")
    elif bind:
        problem = ip_error(bind)
        if problem:
            report.error((*path, "bind"), "invalid-bind", f"{problem}; bind takes an IP address or unix://path")


def _check_tls(report: ResourceReport, tls: ServerTLSSettings, path: Path) -> None:
    _check_ciphers(report, tls, path)
    if tls.mode == "ISTIO_MUTUAL":
        for field_name, present in (
            ("serverCertificate", tls.server_certificate),
            ("privateKey", tls.private_key),
            ("caCertificates", tls.ca_certificates),
            ("tlsCertificates", tls.tls_certificates),
            ("credentialName", tls.credential_name),
            ("credentialNames", tls.credential_names),
        ):
            if present:
                report.error(
                    (*path, field_name), "tls-istio-mutual-certificates", f"ISTIO_MUTUAL TLS cannot have {field_name}"
                )
        return
    if tls.mode in PASSTHROUGH_MODES and _has_certificates(tls):
        report.warning((*path, "mode"), "tls-certificates-ignored", f"{tls.mode} mode does not use certificates")
    sources = sum(
        (
            bool(tls.server_certificate and tls.private_key),
            bool(tls.credential_name),
            bool(tls.credential_names),
            bool(tls.tls_certificates),
        )
    )
    if sources > 1:
        report.error(
            path,
            "tls-multiple-certificate-sources",
            "give only one of credentialName, credentialNames, serverCertificate/privateKey or tlsCertificates",
        )
    if tls.mode in TERMINATING_MODES and (tls.credential_name or tls.credential_names):
        return  # the credential brings the certificate, key and CA
    if tls.mode in TERMINATING_MODES:
        _check_terminating_certificates(report, tls, path)
    if tls.ca_crl:
        if tls.credential_name:
            report.error((*path, "caCrl"), "tls-crl-unsupported", "caCrl cannot be combined with credentialName")
        if tls.mode == "SIMPLE":
            report.error((*path, "caCrl"), "tls-crl-unsupported", "caCrl needs MUTUAL or OPTIONAL_MUTUAL TLS")


def _check_terminating_certificates(report: ResourceReport, tls: ServerTLSSettings, path: Path) -> None:
    prefix = "SIMPLE TLS" if tls.mode == "SIMPLE" else "MUTUAL TLS"
    if tls.mode != "SIMPLE" and not tls.ca_certificates:
        report.error(
            (*path, "caCertificates"), "tls-missing-ca", f"{prefix} needs caCertificates to verify client certificates"
        )
    if len(tls.tls_certificates) > 2:
        report.warning((*path, "tlsCertificates"), "tls-too-many-certificates", f"{prefix} takes at most 2")
    pairs: list[tuple[Path, str, str]] = [
        ((*path, "tlsCertificates", i), c.server_certificate, c.private_key) for i, c in enumerate(tls.tls_certificates)
    ] or [(path, tls.server_certificate, tls.private_key)]
    for where, certificate, key in pairs:
        if not certificate:
            report.error(where, "tls-missing-certificate", f"{prefix} needs a server certificate (serverCertificate)")
        if not key:
            report.error(where, "tls-missing-private-key", f"{prefix} needs a private key (privateKey)")


def _has_certificates(tls: ServerTLSSettings) -> bool:
    return bool(
        tls.ca_crl
        or tls.server_certificate
        or tls.private_key
        or tls.ca_certificates
        or tls.tls_certificates
        or tls.credential_name
        or tls.credential_names
    )


def _check_ciphers(report: ResourceReport, tls: ServerTLSSettings, path: Path) -> None:
    if tls.min_protocol_version in ("TLSV1_0", "TLSV1_1") and not tls.cipher_suites:
        report.warning(
            (*path, "minProtocolVersion"),
            "tls-old-version-without-ciphers",
            "TLS versions below 1.2 need cipherSuites that support them; the defaults do not",
        )
    seen: set[str] = set()
    for i, suite in enumerate(tls.cipher_suites):
        if not _is_cipher_suite(suite):
            report.error(
                (*path, "cipherSuites", i),
                "invalid-cipher-suite",
                f"{suite!r} is not a cipher suite Envoy knows; istiod would drop it silently",
            )
        elif suite in seen:
            report.warning((*path, "cipherSuites", i), "duplicate-cipher-suite", f"{suite!r} is listed twice")
        seen.add(suite)


def _is_cipher_suite(suite: str) -> bool:
    """A known name, `ALL`, or an equal-preference group `[A|B]` of known names.

    istio lets anything that does not start with a letter or digit through, but Envoy tries every entry on
    its own and rejects the listener if one fails, which `-X` and `!X` always do.
    """
    if suite.startswith("[") and suite.endswith("]"):
        return all(name in CIPHER_SUITES for name in suite[1:-1].split("|"))
    return suite == "ALL" or suite in CIPHER_SUITES
