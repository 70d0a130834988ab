"""TLS passthrough through a real Envoy (istio.io "Ingress Gateway without TLS Termination"): the gateway
reads only the SNI, picks a filter chain per `tls[].match[].sniHosts`, and proxies the encrypted bytes; the
client sees the upstream's own certificate."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from reconciler.cli.localrun import free_port
from tests.conformance.certs import CertificateAuthority, KeyPair
from tests.conformance.gateway_manifests import documents, file_tls, gateway_manifest, server, service, virtual_service
from tests.conformance.harness import XdsHarness
from tests.conformance.l4_upstreams import EchoTcpServer, tls_client, tls_exchange


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"), "example-ca")


@pytest.fixture(scope="module")
def upstream_pairs(ca: CertificateAuthority) -> dict[str, KeyPair]:
    return {name: ca.issue(f"{name}.example.com") for name in ("nginx", "echo")}


@pytest.fixture(scope="module")
def upstreams(upstream_pairs: dict[str, KeyPair]) -> Iterator[dict[str, EchoTcpServer]]:
    servers = {name: EchoTcpServer(name, pair).start() for name, pair in upstream_pairs.items()}
    yield servers
    for upstream in servers.values():
        upstream.stop()


def passthrough_server(port: int, hosts: str, protocol: str = "HTTPS", name: str = "https") -> str:
    return (
        f"{{port: {{number: {port}, name: {name}, protocol: {protocol}}}, hosts: {hosts}, tls: {{mode: PASSTHROUGH}}}}"
    )


def sni_route(name: str, host: str, match: str = "") -> str:
    body = (
        f"  tls:\n  - match: [{{sniHosts: [{host}]{match}}}]\n"
        f"    route: [{{destination: {{host: {name}.internal, port: {{number: 443}}}}}}]"
    )
    return virtual_service(name, f"[{host}]", body)


def services(upstreams: dict[str, EchoTcpServer]) -> str:
    return documents(
        *(service(f"{n}.internal", {"v1": s.port}, port=443, protocol="TLS") for n, s in upstreams.items())
    )


def test_sni_picks_the_upstream_and_the_gateway_never_terminates(
    gateway: XdsHarness,
    ca: CertificateAuthority,
    upstreams: dict[str, EchoTcpServer],
    upstream_pairs: dict[str, KeyPair],
) -> None:
    port = free_port()
    gateway.apply(
        documents(
            gateway_manifest(passthrough_server(port, "[nginx.example.com, echo.example.com]")),
            services(upstreams),
            sni_route("nginx", "nginx.example.com"),
            sni_route("echo", "echo.example.com"),
        )
    )
    client = tls_client(ca.certificate)
    for name in ("nginx", "echo"):
        reply = tls_exchange(port, f"{name}.example.com", client, "hi")
        # The upstream answered, and the certificate the client verified is the upstream's own.
        assert (reply.line, reply.peer_certificate) == (f"{name} hi", upstream_pairs[name].der)
    with pytest.raises((ssl.SSLError, ConnectionError)):  # an SNI no route names has no filter chain
        tls_exchange(port, "other.example.com", ssl.create_default_context(cafile=str(ca.certificate)))


def test_passthrough_and_terminated_servers_share_a_port(
    gateway: XdsHarness,
    ca: CertificateAuthority,
    upstreams: dict[str, EchoTcpServer],
    upstream_pairs: dict[str, KeyPair],
) -> None:
    """One port, two kinds of filter chain: SNI `nginx` is passed through, SNI `echo` is terminated here (TLS)."""
    gateway_pair = ca.issue("echo.example.com")
    port = free_port()
    terminated = server(port, "TLS", "[echo.example.com]", file_tls(gateway_pair))
    plain_echo = EchoTcpServer("plain-echo").start()
    try:
        gateway.apply(
            documents(
                gateway_manifest(passthrough_server(port, "[nginx.example.com]"), terminated),
                services(upstreams),
                service("plain.internal", {"v1": plain_echo.port}),
                sni_route("nginx", "nginx.example.com"),
                virtual_service(
                    "echo", "[echo.example.com]", "  tcp:\n  - route: [{destination: {host: plain.internal}}]"
                ),
            )
        )
        client = tls_client(ca.certificate)
        passed = tls_exchange(port, "nginx.example.com", client)
        assert (passed.line, passed.peer_certificate) == ("nginx hello", upstream_pairs["nginx"].der)
        terminated_reply = tls_exchange(port, "echo.example.com", client)
        assert (terminated_reply.line, terminated_reply.peer_certificate) == ("plain-echo hello", gateway_pair.der)
    finally:
        plain_echo.stop()


def test_a_match_restricted_to_one_gateway_makes_no_chain_on_another(
    gateway: XdsHarness, ca: CertificateAuthority, upstreams: dict[str, EchoTcpServer]
) -> None:
    """`match.gateways` and `match.port` narrow where a TLS route applies, as on istiod's gateways."""
    port_a, port_b = free_port(), free_port()
    gateways = documents(
        gateway_manifest(passthrough_server(port_a, "['*.example.com']"), name="gw-a"),
        gateway_manifest(passthrough_server(port_b, "['*.example.com']"), name="gw-b"),
    )
    body = (
        "  tls:\n"
        f"  - match: [{{sniHosts: [nginx.example.com], gateways: [gw-a]}}]\n"
        "    route: [{destination: {host: nginx.internal, port: {number: 443}}}]\n"
        f"  - match: [{{sniHosts: [echo.example.com], port: {port_b}}}]\n"
        "    route: [{destination: {host: echo.internal, port: {number: 443}}}]"
    )
    gateway.apply(
        documents(
            gateways,
            services(upstreams),
            virtual_service("both", "[nginx.example.com, echo.example.com]", body, gateways="[gw-a, gw-b]"),
        )
    )
    client = tls_client(ca.certificate)
    assert tls_exchange(port_a, "nginx.example.com", client).line == "nginx hello"
    assert tls_exchange(port_b, "echo.example.com", client).line == "echo hello"
    for port, sni in ((port_b, "nginx.example.com"), (port_a, "echo.example.com")):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_exchange(port, sni, client)
