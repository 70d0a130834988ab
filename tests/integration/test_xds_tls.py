"""xDS over TLS and mTLS with real certificates (made here with openssl), real gRPC clients and real Envoys.

- a grpc.aio server with `server_credentials` tells each client who it is (`peer_identity`);
- a node without a certificate, or with one from another CA, cannot even finish the handshake under mTLS;
- `authorizing_handler` refuses a stream whose certificate does not allow the fleet it claims;
- a real Envoy with `tls_transport_socket` in its bootstrap gets its fleet; with another fleet's
  certificate it gets nothing; without a certificate it cannot connect.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
import yaml
from envoy.service.discovery.v3 import discovery_pb2
from structlog.testing import capture_logs

from reconciler.cli.localrun import LOOPBACK, EnvoyProcess
from reconciler.translate.snapshot import Snapshot
from reconciler.xds import AdsServer
from reconciler.xds.security import (
    NodeAuthorizer,
    PeerIdentity,
    TlsConfigError,
    authorizing_handler,
    peer_identity,
    server_credentials,
    tls_transport_socket,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certs")

SERVER_NAME = "xds.gw.test"
EDGE_ID = "spiffe://gw.test/fleet/edge/gw-1"
INTERNAL_ID = "spiffe://gw.test/fleet/internal/gw-9"
RULES = {"spiffe://gw.test/fleet/edge/*": {"edge"}, "spiffe://gw.test/fleet/internal/*": {"internal"}}


# ---------------------------------------------------------------------- a throwaway PKI


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


class Pki:
    """A CA and certificates it signs, as PEM files (EC P-256: quick to make)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca = Pair(root / f"{name}-ca.crt", root / f"{name}-ca.key")
        _openssl(
            "req", "-x509", *_EC, "-nodes", "-keyout", self.ca.key, "-out", self.ca.cert, "-days", "1",
            "-subj", f"/CN={name} test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(self, name: str, cn: str, sans: list[str], usage: str) -> Pair:
        pair = Pair(self.root / f"{name}.crt", self.root / f"{name}.key")
        csr, ext = self.root / f"{name}.csr", self.root / f"{name}.ext"
        _openssl("req", "-new", *_EC, "-nodes", "-keyout", pair.key, "-out", csr, "-subj", f"/CN={cn}")
        lines = [f"extendedKeyUsage={usage}", "basicConstraints=CA:FALSE"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca.cert, "-CAkey", self.ca.key, "-CAcreateserial",
            "-out", pair.cert, "-days", "1", "-extfile", ext,
        )  # fmt: skip
        return pair


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@dataclass(frozen=True)
class Certs:
    pki: Pki
    ca: Path
    server: Pair
    edge: Pair
    internal: Pair
    cn_only: Pair
    rogue: Pair  # the edge identity, but from a CA nobody trusts


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    root = tmp_path_factory.mktemp("pki")
    pki, rogue = Pki(root, "gw"), Pki(root / "rogue", "rogue")
    return Certs(
        pki=pki,
        ca=pki.ca.cert,
        server=pki.issue("server", "xds", [f"DNS:{SERVER_NAME}", "IP:127.0.0.1"], "serverAuth"),
        edge=pki.issue("edge", "gw-1", [f"URI:{EDGE_ID}", "DNS:gw-1.edge.gw.test"], "clientAuth"),
        internal=pki.issue("internal", "gw-9", [f"URI:{INTERNAL_ID}"], "clientAuth"),
        cn_only=pki.issue("cn-only", "legacy-gateway", [], "clientAuth"),
        rogue=rogue.issue("rogue-edge", "gw-1", [f"URI:{EDGE_ID}"], "clientAuth"),
    )


# ---------------------------------------------------------------------- a tiny service that says who you are

WHO = "/test.Who/Identity"


async def _who(_: bytes, context: grpc.aio.ServicerContext) -> bytes:
    identity = peer_identity(context)
    return b"<none>" if identity is None else str(identity).encode()


def _who_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler("test.Who", {"Identity": grpc.unary_unary_rpc_method_handler(_who)})


@pytest.fixture
async def start_server() -> AsyncIterator[Any]:
    servers: list[grpc.aio.Server] = []

    async def start(credentials: Any, *handlers: grpc.GenericRpcHandler) -> int:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(handlers)
        port: int = server.add_secure_port(f"{LOOPBACK}:0", credentials)
        await server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        await server.stop(grace=None)


def _client_credentials(certs: Certs, pair: Pair | None) -> grpc.ChannelCredentials:
    ca = certs.ca.read_bytes()
    if pair is None:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(ca, pair.key.read_bytes(), pair.cert.read_bytes())


def _channel(port: int, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        f"{LOOPBACK}:{port}", credentials, options=[("grpc.ssl_target_name_override", SERVER_NAME)]
    )


async def _ask_identity(port: int, certs: Certs, pair: Pair | None) -> str:
    async with _channel(port, _client_credentials(certs, pair)) as channel:
        answer: bytes = await channel.unary_unary(WHO)(b"", timeout=5)
        return answer.decode()


async def test_mtls_tells_the_server_who_the_client_is(certs: Certs, start_server: Any) -> None:
    port = await start_server(server_credentials(certs.server.cert, certs.server.key, certs.ca), _who_handler())
    assert await _ask_identity(port, certs, certs.edge) == f"{EDGE_ID}, gw-1.edge.gw.test"
    assert await _ask_identity(port, certs, certs.cn_only) == "legacy-gateway"  # the CN only without SANs


@pytest.mark.parametrize("client", ["none", "rogue"])
async def test_mtls_refuses_the_handshake_without_a_trusted_client_cert(
    certs: Certs, start_server: Any, client: str
) -> None:
    port = await start_server(server_credentials(certs.server.cert, certs.server.key, certs.ca), _who_handler())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _ask_identity(port, certs, None if client == "none" else certs.rogue)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_server_only_tls_has_no_peer_identity(certs: Certs, start_server: Any) -> None:
    port = await start_server(server_credentials(certs.server.cert, certs.server.key), _who_handler())
    assert await _ask_identity(port, certs, None) == "<none>"


def test_unusable_tls_files_are_named_in_the_error(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"cannot read the xDS server private key from .*missing\.key"):
        server_credentials(certs.server.cert, tmp_path / "missing.key", certs.ca)
    (tmp_path / "not-a-cert.pem").write_text("hello")
    with pytest.raises(TlsConfigError, match=r"the xDS client CA file .*not-a-cert\.pem holds no PEM block"):
        server_credentials(certs.server.cert, certs.server.key, tmp_path / "not-a-cert.pem")
    with pytest.raises(TlsConfigError, match="server certificate file"):
        server_credentials(certs.server.key, certs.server.key)  # swapped: a key is no certificate
    with pytest.raises(TlsConfigError, match="is not the key of the certificate"):
        server_credentials(certs.server.cert, certs.edge.key)


def _served_certificate_sans(port: int, certs: Certs) -> list[str]:
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.edge.cert), str(certs.edge.key))
    context.set_alpn_protocols(["h2"])
    context.check_hostname = False
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        peer = tls.getpeercert() or {}
    return [str(entry[1]) for entry in peer.get("subjectAltName", ())]


async def test_a_rotated_server_certificate_is_served_without_a_restart(
    certs: Certs, start_server: Any, tmp_path: Path
) -> None:
    live = Pair(tmp_path / "tls.crt", tmp_path / "tls.key")
    shutil.copy(certs.server.cert, live.cert)
    shutil.copy(certs.server.key, live.key)
    port = await start_server(server_credentials(live.cert, live.key, certs.ca), _who_handler())
    assert SERVER_NAME in await asyncio.to_thread(_served_certificate_sans, port, certs)

    new = certs.pki.issue("rotated", "xds", ["DNS:rotated.gw.test"], "serverAuth")
    shutil.copy(new.cert, live.cert)  # halfway: the new certificate with the old key is not served ...
    with capture_logs() as logs:
        for _ in range(2):
            assert SERVER_NAME in await asyncio.to_thread(_served_certificate_sans, port, certs)
    assert [e["event"] for e in logs] == ["xds.tls_reload_failed"]  # once per change, not per handshake
    shutil.copy(new.key, live.key)  # ... the complete pair is
    assert "rotated.gw.test" in await asyncio.to_thread(_served_certificate_sans, port, certs)
    assert await _ask_identity_as(port, certs, "rotated.gw.test") == f"{EDGE_ID}, gw-1.edge.gw.test"


async def _ask_identity_as(port: int, certs: Certs, server_name: str) -> str:
    channel = grpc.aio.secure_channel(
        f"{LOOPBACK}:{port}",
        _client_credentials(certs, certs.edge),
        options=[("grpc.ssl_target_name_override", server_name)],
    )
    async with channel:
        answer: bytes = await channel.unary_unary(WHO)(b"", timeout=5)
        return answer.decode()


# ---------------------------------------------------------------------- node → fleet authorization


@pytest.mark.parametrize(
    ("names", "fleet", "allowed"),
    [
        ((EDGE_ID,), "edge", True),
        ((EDGE_ID,), "internal", False),
        ((INTERNAL_ID,), "internal", True),
        (("spiffe://gw.test/fleet/edge/gw-1/extra",), "edge", False),  # `*` is one path segment
        (("spiffe://gw.test/fleet/edge/",), "edge", False),  # ... and not an empty one
        (("spiffe://other.test/fleet/edge/gw-1",), "edge", False),
        (("gw-7.edge.gw.test",), "edge", True),
        (("GW-7.Edge.GW.test",), "edge", True),  # DNS names compare case-insensitively
        (("a.gw-7.edge.gw.test",), "edge", False),  # `*` is one DNS label
        (("ops.gw.test",), "internal", True),  # a fleet wildcard
        (("nobody.example",), "edge", False),
        (("nobody.example", EDGE_ID), "edge", True),  # any of the certificate's names may match
    ],
)
def test_node_authorizer_rules(names: tuple[str, ...], fleet: str, allowed: bool) -> None:
    authorizer = NodeAuthorizer({**RULES, "*.edge.gw.test": {"edge"}, "ops.gw.test": {"*"}})
    refusal = authorizer.check(PeerIdentity(names), fleet)
    assert (refusal is None) is allowed, refusal


def test_node_authorizer_sentences() -> None:
    authorizer = NodeAuthorizer(RULES)
    assert authorizer.check(PeerIdentity((EDGE_ID,)), "internal") == (
        f"certificate identity [{EDGE_ID}] is not authorized for fleet 'internal': it may receive edge"
    )
    assert "no rule in xds.authorization names it" in (authorizer.check(PeerIdentity(("x",)), "edge") or "")
    assert "presented none" in (authorizer.check(None, "edge") or "")
    assert NodeAuthorizer({"*": {"edge"}}).check(PeerIdentity(("anyone",)), "edge") is None


def _fleet_echo_handler() -> grpc.GenericRpcHandler:
    """Stands in for the ADS server: answers each request with the fleet the stream claimed."""

    async def stream(
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest], _: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request.node.cluster.encode()

    return grpc.method_handlers_generic_handler(
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                stream,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=lambda body: body,
            )
        },
    )


async def _claim(port: int, certs: Certs, pair: Pair, fleet: str, requests: int = 1) -> list[bytes]:
    request = discovery_pb2.DiscoveryRequest()
    request.node.cluster, request.node.id = fleet, "gw-1"
    request.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    async with _channel(port, _client_credentials(certs, pair)) as channel:
        call = channel.stream_stream(
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        )(iter([request] * requests), timeout=5)
        return [answer async for answer in call]


async def test_authorizing_handler_refuses_a_node_claiming_another_fleet(certs: Certs, start_server: Any) -> None:
    handler = authorizing_handler(_fleet_echo_handler(), NodeAuthorizer(RULES))
    port = await start_server(server_credentials(certs.server.cert, certs.server.key, certs.ca), handler)
    # The first request, which the guard read, is passed on with the rest.
    assert await _claim(port, certs, certs.edge, "edge", requests=2) == [b"edge", b"edge"]
    with capture_logs() as logs, pytest.raises(grpc.aio.AioRpcError) as refused:
        await _claim(port, certs, certs.edge, "internal")
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "not authorized for fleet 'internal'" in (refused.value.details() or "")
    assert [(e["event"], e["fleet"], e["identity"]) for e in logs] == [
        ("xds.unauthorized", "internal", f"{EDGE_ID}, gw-1.edge.gw.test")
    ]


# ---------------------------------------------------------------------- a real Envoy


def test_transport_socket_shape(certs: Certs) -> None:
    socket_ = tls_transport_socket(certs.ca, certs.edge.cert, certs.edge.key, SERVER_NAME)
    context = socket_["typed_config"]
    assert context["sni"] == SERVER_NAME
    assert context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": SERVER_NAME}}
    ]
    by_ip = tls_transport_socket(certs.ca, None, None, "127.0.0.1")["typed_config"]
    assert "tls_certificates" not in by_ip["common_tls_context"]
    assert "sni" not in by_ip  # SNI is for host names only
    assert by_ip["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]["san_type"] == (
        "IP_ADDRESS"
    )
    with pytest.raises(ValueError, match="both"):
        tls_transport_socket(certs.ca, certs.edge.cert, None, SERVER_NAME)


@pytest.fixture
def envoys(tmp_path: Path) -> Iterator[list[EnvoyProcess]]:
    started: list[EnvoyProcess] = []
    yield started
    for envoy in started:
        envoy.stop()


async def _start_envoy(
    envoys: list[EnvoyProcess],
    workdir: Path,
    node_id: str,
    xds_port: int,
    certs: Certs,
    pair: Pair | None,
    sni: str = SERVER_NAME,
) -> EnvoyProcess:
    envoy = EnvoyProcess(workdir, "edge", node_id, xds_port)
    bootstrap = yaml.safe_load(envoy.config_path.read_text())
    ca = certs.ca
    cert, key = (pair.cert, pair.key) if pair is not None else (None, None)
    bootstrap["static_resources"]["clusters"][0]["transport_socket"] = tls_transport_socket(ca, cert, key, sni)
    envoy.config_path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    envoys.append(envoy)
    return await asyncio.to_thread(envoy.start)


def _stat(envoy: EnvoyProcess, name: str) -> int:
    response = requests.get(f"{envoy.admin_url}/stats", params={"filter": f"^{name}$", "format": "json"}, timeout=2)
    values = [s.get("value", 0) for s in response.json()["stats"] if s["name"] == name]
    return int(values[0]) if values else 0


async def _wait_stat(envoy: EnvoyProcess, name: str, at_least: int, timeout: float = 15.0) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    value = 0
    while asyncio.get_running_loop().time() < deadline:
        value = await asyncio.to_thread(_stat, envoy, name)
        if value >= at_least:
            return value
        await asyncio.sleep(0.1)
    return value


async def test_envoy_gets_its_fleet_only_with_the_right_certificate(
    certs: Certs, start_server: Any, envoys: list[EnvoyProcess], tmp_path: Path
) -> None:
    ads = AdsServer()
    ads.set_fleet_snapshot("edge", Snapshot.empty())
    ads.set_known_fleets(["edge"])
    authorized = authorizing_handler(ads.handler(), NodeAuthorizer(RULES))
    port = await start_server(server_credentials(certs.server.cert, certs.server.key, certs.ca), authorized)

    with capture_logs() as logs:
        right, by_ip, wrong, bare = await asyncio.gather(
            _start_envoy(envoys, tmp_path, "gw-1", port, certs, certs.edge),
            _start_envoy(envoys, tmp_path, "gw-2", port, certs, certs.edge, sni=LOOPBACK),  # IP SAN, no SNI
            _start_envoy(envoys, tmp_path, "gw-9", port, certs, certs.internal),  # internal's cert, claims edge
            _start_envoy(envoys, tmp_path, "gw-0", port, certs, None),
        )
        assert await _wait_stat(right, "control_plane.connected_state", 1) == 1
        assert await _wait_stat(by_ip, "control_plane.connected_state", 1) == 1
        # Another fleet's node is answered (HTTP 200 with grpc-status PERMISSION_DENIED), at least once.
        assert await _wait_stat(wrong, "cluster.xds_cluster.upstream_rq_2xx", 1) >= 1
        # A node without a certificate has its connection closed by the daemon's TLS stack, every time.
        assert await _wait_stat(bare, "cluster.xds_cluster.upstream_cx_destroy_remote", 1) >= 1

    assert [n.node_id for n in ads.nodes("edge")] == ["gw-1", "gw-2"]
    assert await asyncio.to_thread(_stat, wrong, "control_plane.connected_state") == 0
    assert await asyncio.to_thread(_stat, bare, "control_plane.connected_state") == 0
    assert await asyncio.to_thread(_stat, bare, "cluster.xds_cluster.upstream_rq_2xx") == 0  # never got an answer
    refused = {(e["node"], e["fleet"]) for e in logs if e["event"] == "xds.unauthorized"}
    assert refused == {("gw-9", "edge")}
