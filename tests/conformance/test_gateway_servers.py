"""Gateway servers through a real Envoy: several Gateways merged on one port, `ns/host` and `./host` visibility,
wildcard hosts as SNI, and HTTP/2 on HTTP2, GRPC and HTTPS servers."""

from __future__ import annotations

import subprocess

import pytest
import requests

from reconciler.cli.localrun import EchoServer, free_port
from reconciler.translate.snapshot import ROUTE
from tests.conformance.certs import CertificateAuthority
from tests.conformance.gateway_manifests import (
    documents,
    file_tls,
    gateway_manifest,
    server,
    service,
    virtual_service,
)
from tests.conformance.harness import XdsHarness
from tests.conformance.l4_upstreams import https_get, tls_client


def app(backends: dict[str, EchoServer]) -> str:
    return service("app.internal", {name: s.port for name, s in backends.items()}, protocol="HTTP")


def route(name: str, host: str, subset: str, namespace: str = "default", gateways: str = "[gw]") -> str:
    body = f"  http:\n  - route: [{{destination: {{host: app.internal, subset: {subset}}}}}]"
    return virtual_service(name, f"[{host}]", body, gateways=gateways, namespace=namespace)


def get(port: int, host: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=5)


def test_http_servers_of_two_gateways_share_one_port(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    port = free_port()
    snapshot = gateway.apply(
        documents(
            gateway_manifest(server(port, "HTTP", "[a.example.com]"), name="gw-a"),
            gateway_manifest(server(port, "HTTP", "[b.example.com]"), name="gw-b"),
            app(backends),
            route("a", "a.example.com", "v1", gateways="[gw-a]"),
            route("b", "b.example.com", "v2", gateways="[gw-b]"),
        )
    )
    assert list(snapshot.of_type(ROUTE)) == [f"http.{port}"]  # one route config for the merged port
    assert get(port, "a.example.com").headers["x-upstream"] == "v1"
    assert get(port, "b.example.com").headers["x-upstream"] == "v2"


def test_namespaced_server_hosts_limit_which_virtual_services_bind(
    gateway: XdsHarness, backends: dict[str, EchoServer]
) -> None:
    """`team-a/host` admits only VirtualServices of team-a; `./host` only those of the Gateway's namespace."""
    port = free_port()
    gateway.apply(
        documents(
            gateway_manifest(
                server(port, "HTTP", "[team-a/a.example.com, ./infra.example.com, '*/open.example.com']"),
                namespace="infra",
            ),
            app(backends),
            route("a", "a.example.com", "v1", "team-a", "[infra/gw]"),
            route("intruder", "infra.example.com", "v2", "team-a", "[infra/gw]"),
            route("infra", "infra.example.com", "v1", "infra", "[infra/gw]"),
            route("open", "open.example.com", "v2", "team-b", "[infra/gw]"),
            route("sneaky", "a.example.com", "v2", "team-b", "[infra/gw]"),
        )
    )
    # team-b's `sneaky` claims a.example.com too, but only team-a may bind it: every answer is team-a's v1.
    assert {get(port, "a.example.com").headers["x-upstream"] for _ in range(5)} == {"v1"}
    assert get(port, "infra.example.com").headers["x-upstream"] == "v1"
    assert get(port, "open.example.com").headers["x-upstream"] == "v2"


def test_wildcard_server_host_is_a_wildcard_sni(
    gateway: XdsHarness, backends: dict[str, EchoServer], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Server host `*.example.com`: one chain serves every subdomain; the VirtualService host picks the vhost."""
    ca = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    pair = ca.issue("wildcard", dns=("*.example.com",))
    port = free_port()
    gateway.apply(
        documents(
            gateway_manifest(server(port, "HTTPS", "['*.example.com']", file_tls(pair))),
            app(backends),
            route("shop", "shop.example.com", "v2"),
        )
    )
    client = tls_client(ca.certificate)
    reply = https_get(port, "shop.example.com", client)
    assert (reply.status, reply.headers["x-upstream"], reply.peer_certificate) == (200, "v2", pair.der)
    assert https_get(port, "blog.example.com", client).status == 404  # served by the chain, routed by no VS


@pytest.mark.parametrize("protocol", ["HTTP2", "GRPC"])
def test_http2_and_grpc_servers_accept_cleartext_http2(
    gateway: XdsHarness, backends: dict[str, EchoServer], protocol: str
) -> None:
    port = free_port()
    gateway.apply(
        documents(gateway_manifest(server(port, protocol, "['*']")), app(backends), route("app", "'*'", "v1"))
    )
    assert _curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/") == ("2", "200")


def test_https_negotiates_http2_by_alpn(
    gateway: XdsHarness, backends: dict[str, EchoServer], tmp_path_factory: pytest.TempPathFactory
) -> None:
    ca = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    port = free_port()
    gateway.apply(
        documents(
            gateway_manifest(server(port, "HTTPS", "[app.example.com]", file_tls(ca.issue("app.example.com")))),
            app(backends),
            route("app", "app.example.com", "v1"),
        )
    )
    resolve = f"app.example.com:{port}:127.0.0.1"
    assert _curl(
        "--http2", "--cacert", str(ca.certificate), "--resolve", resolve, f"https://app.example.com:{port}/"
    ) == (
        "2",
        "200",
    )


def _curl(*args: str) -> tuple[str, str]:
    """(HTTP version, status) of one request with the system curl."""
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--max-time", "5", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    version, status = done.stdout.split()
    return version, status
