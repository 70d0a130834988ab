"""Issue 7 through the whole daemon: webhooks, API tokens, SDS credentials, secrets hygiene, hostile clients."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import requests
from envoy.service.discovery.v3 import discovery_pb2

from reconciler.cli.localrun import EchoServer, EnvoyProcess, free_port
from reconciler.xds.security import tls_transport_socket
from tests.conformance.certs import CertificateAuthority
from tests.conformance.l4_upstreams import https_get as https_request
from tests.conformance.l4_upstreams import tls_client
from tests.signing import allowed_signers, ssh_key, ssh_signing
from tests.support import DaemonProcess, GitRemote, wait_for

WEBHOOK_SECRET = "webhook-secret-7f3a9c1e5b2d4f60"
READ_TOKEN = "read-token-0123456789abcdef0123"
CONTROL_TOKEN = "control-token-fedcba9876543210fe"
HOST = "secure.example.test"


def write_secret(path: Path, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def repo_with_tls_gateway(remote: GitRemote, upstream: EchoServer, http_port: int, https_port: int, target: str) -> str:
    remote.write(
        "config.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Fleet
        metadata: {{name: edge}}
        spec: {{selector: {{app: edge}}}}
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: edge}}
        spec:
          selector: {{app: edge}}
          servers:
          - port: {{number: {http_port}, name: http, protocol: HTTP}}
            hosts: ["*"]
          - port: {{number: {https_port}, name: https, protocol: HTTPS}}
            hosts: [{HOST}]
            tls: {{mode: SIMPLE, credentialName: shop-cert}}
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: backend}}
        spec:
          hosts: [backend.internal]
          ports: [{{number: 80, name: http, protocol: HTTP}}]
          resolution: STATIC
          endpoints: [{{address: 127.0.0.1, ports: {{http: {upstream.port}}}}}]
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: shop}}
        spec:
          hosts: [{HOST}]
          gateways: [edge]
          http:
          - match: [{{uri: {{prefix: /{target}}}}}]
            route: [{{destination: {{host: backend.internal}}}}]
        """,
    )
    return remote.commit_and_push(f"route /{target}")


def github_delivery(sha: str, delivery: str, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": "refs/heads/main", "after": sha, "commits": [{"id": sha}]}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
               "X-Hub-Signature-256": signature}  # fmt: skip
    return body, headers


def test_webhooks_tokens_credentials_and_no_secret_leaks(
    tmp_path: Path, remote: GitRemote, start_daemon: Callable[..., DaemonProcess],
    start_envoy: Callable[..., EnvoyProcess],
) -> None:  # fmt: skip
    secrets_dir = tmp_path / "secrets"
    ca = CertificateAuthority(tmp_path / "ca")
    pair = ca.issue(HOST)
    (secrets_dir / "shop-cert").mkdir(parents=True)
    (secrets_dir / "shop-cert" / "tls.crt").write_bytes(pair.certificate_pem)
    (secrets_dir / "shop-cert" / "tls.key").write_bytes(pair.private_key_pem)
    key_body = pair.private_key_pem.decode().split("-----")[2].strip().splitlines()[1]  # a line of key material

    upstream = EchoServer("backend").start()
    http_port, https_port = free_port(), free_port()
    first = repo_with_tls_gateway(remote, upstream, http_port, https_port, "v1")
    extra = {
        "webhook": {"secret_file": write_secret(tmp_path / "hook.secret", WEBHOOK_SECRET)},
        "api": {"auth": {"tokens": [
            {"file": write_secret(tmp_path / "read.token", READ_TOKEN), "scope": "read", "name": "dashboard"},
            {"file": write_secret(tmp_path / "control.token", CONTROL_TOKEN), "scope": "control", "name": "ci"},
        ]}},
        "secrets": {"dir": str(secrets_dir)},
    }  # fmt: skip
    daemon = start_daemon(remote.url, poll="1h", extra=extra)  # only the first poll and webhooks reconcile
    daemon.headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    try:
        start_envoy("edge", "edge-1", daemon.xds_port)
        client = tls_client(ca.certificate)

        def https_get(path: str) -> int:  # verified against our CA, with the SNI the server chain matches
            return https_request(https_port, HOST, client, path).status

        wait_for(lambda: https_get("/v1") == 200, what="HTTPS through the SDS credential")

        # API tokens: reads need a token, control needs the control scope; health stays open.
        api = daemon.api
        assert requests.get(f"{api}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{api}/api/v1/status", timeout=5).status_code == 401
        assert (
            requests.get(f"{api}/api/v1/status", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code
            == 401
        )
        assert requests.post(f"{api}/api/v1/reconcile", headers=daemon.headers, timeout=5).status_code == 403
        control = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
        assert requests.post(f"{api}/api/v1/reconcile", headers=control, timeout=5).status_code == 202
        token_file = tmp_path / "read.token"
        cli = subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", "status", "--api", api, "--token-file", str(token_file),
             "--format", "json"], capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["head"] == first

        # A push with a forged, a replayed and an oversized delivery: none reconciles.
        second = repo_with_tls_gateway(remote, upstream, http_port, https_port, "v2")
        body, headers = github_delivery(second, "d-1", secret="not-the-secret-at-all-xxxx")
        assert requests.post(f"{api}/hooks/git", data=body, headers=headers, timeout=5).status_code == 401
        big, big_headers = github_delivery(second, "d-big")
        padded = big[:-1] + b', "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        assert requests.post(f"{api}/hooks/git", data=padded, headers=big_headers, timeout=5).status_code == 413
        time.sleep(1.0)
        assert daemon.status()["head"] == first and https_get("/v2") == 404

        # The genuine delivery reconciles at once; its replay is refused.
        body, headers = github_delivery(second, "d-2")
        assert requests.post(f"{api}/hooks/git", data=body, headers=headers, timeout=5).status_code == 202
        wait_for(lambda: https_get("/v2") == 200, timeout=10, what="the webhook-triggered rollout")
        assert requests.post(f"{api}/hooks/git", data=body, headers=headers, timeout=5).status_code == 409
        webhook = daemon.status()["webhook"]
        assert webhook["last_delivery_sha"] == second and webhook["lag_seconds"] is not None

        # Secrets hygiene: no token, webhook secret or private key in logs, API answers or `render`.
        seen = [daemon.log(), json.dumps(daemon.status()),
                requests.get(f"{api}/metrics", headers=daemon.headers, timeout=5).text,
                requests.get(f"{api}/api/v1/fleets/edge/history", headers=daemon.headers, timeout=5).text]  # fmt: skip
        rendered = subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", "render", str(remote.work), "--fleet", "edge"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        seen.append(rendered.stdout)
        for text in seen:
            for secret in (WEBHOOK_SECRET, READ_TOKEN, CONTROL_TOKEN, key_body, "PRIVATE KEY-----\n"):
                assert secret not in text
        assert oct((daemon.workdir / "state" / "reconciler.db").stat().st_mode & 0o777) == "0o600"
    finally:
        upstream.stop()


def test_daemon_keeps_serving_slow_clients_and_a_thousand_streams(
    remote: GitRemote, start_daemon: Callable[..., DaemonProcess], start_envoy: Callable[..., EnvoyProcess],
) -> None:  # fmt: skip
    upstream = EchoServer("backend").start()
    try:
        http_port = free_port()
        repo_with_tls_gateway(remote, upstream, http_port, free_port(), "v1")
        remote.write("config.yaml", (remote.work / "config.yaml").read_text().replace(
            "    tls: {mode: SIMPLE, credentialName: shop-cert}", "    tls: {mode: SIMPLE, serverCertificate: /x.crt, "
            "privateKey: /x.key}"))  # fmt: skip
        remote.commit_and_push("file certificates")
        daemon = start_daemon(remote.url)
        wait_for(lambda: daemon.status()["fleets"], what="the fleet")

        # Slowloris: many connections that send half a request and then nothing.
        slow = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", daemon.api_port))
            sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        started = time.monotonic()
        assert requests.get(f"{daemon.api}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 2

        streams = asyncio.run(open_ads_streams(daemon.xds_port, count=1000))
        assert streams == 1000
        envoy = start_envoy("edge", "edge-1", daemon.xds_port)
        wait_for(lambda: envoy.stats("control_plane.connected_state").get("control_plane.connected_state") == 1,
                 what="a real Envoy connecting after the storm")  # fmt: skip
        assert daemon.status()["fleets"][0]["name"] == "edge"
        for sock in slow:
            sock.close()
    finally:
        upstream.stop()


async def open_ads_streams(port: int, count: int, per_channel: int = 50) -> int:
    """`count` concurrent ADS streams (over count/per_channel connections), each answered with a snapshot."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(count // per_channel)]
    method = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

    async def one(channel: grpc.aio.Channel, index: int) -> bool:
        call = channel.stream_stream(method, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                                     response_deserializer=discovery_pb2.DiscoveryResponse.FromString)(iter([
            discovery_pb2.DiscoveryRequest(type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster",
                                           node={"id": f"sim-{index}", "cluster": "edge"})]))  # fmt: skip
        response = await asyncio.wait_for(call.read(), timeout=60)
        call.cancel()
        return bool(response.version_info)

    try:
        results = await asyncio.gather(*(one(channels[i % len(channels)], i) for i in range(count)))
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    return sum(results)


@pytest.mark.parametrize("problem", ["missing", "short"])
def test_unusable_webhook_secret_stops_the_start(
    tmp_path: Path, remote: GitRemote, problem: str,
) -> None:  # fmt: skip
    secret = tmp_path / "hook.secret"
    if problem == "short":
        secret.write_text("short\n")
    daemon = DaemonProcess(tmp_path, remote.url, extra={"webhook": {"secret_file": str(secret)}})
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "run", "--config", str(daemon.config_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "webhook secret" in done.stderr and "Traceback" not in done.stderr


def test_xds_mtls_gives_each_node_only_the_fleets_its_certificate_names(
    tmp_path: Path, remote: GitRemote, start_daemon: Callable[..., DaemonProcess],
    start_envoy: Callable[..., EnvoyProcess],
) -> None:  # fmt: skip
    upstream = EchoServer("backend").start()
    try:
        http_port = free_port()
        repo_with_tls_gateway(remote, upstream, http_port, free_port(), "v1")
        ca = CertificateAuthority(tmp_path / "ca")
        server = ca.issue("xds.example.test")
        extra = {"xds": {
            "tls": {"cert_file": str(server.certificate), "key_file": str(server.private_key),
                    "client_ca_file": str(ca.certificate)},
            "authorization": [{"identity": "spiffe://gateways.test/fleet/edge/*", "fleets": ["edge"]},
                              {"identity": "spiffe://gateways.test/fleet/internal/*", "fleets": ["internal"]}],
        }}  # fmt: skip
        daemon = start_daemon(remote.url, extra=extra)
        wait_for(lambda: daemon.status()["fleets"], what="the fleet")

        def node(name: str, identity: str | None, address: str) -> EnvoyProcess:
            pair = ca.issue(name, uris=(identity,), client=True) if identity else None
            socket_ = tls_transport_socket(
                ca.certificate,
                pair.certificate if pair else None,
                pair.private_key if pair else None,
                "127.0.0.1",
                "xds.example.test",
            )
            return start_envoy("edge", name, daemon.xds_port, address, transport_socket=socket_)  # fmt: skip

        right = node("gw-1", "spiffe://gateways.test/fleet/edge/gw-1", "127.0.0.2")
        wrong = node("gw-2", "spiffe://gateways.test/fleet/internal/gw-2", "127.0.0.3")
        anonymous = node("gw-3", None, "127.0.0.4")

        def answers(address: str) -> int:
            try:
                url = f"http://{address}:{http_port}/v1"
                return requests.get(url, headers={"Host": HOST}, timeout=2).status_code
            except requests.ConnectionError:
                return 0

        wait_for(lambda: answers("127.0.0.2") == 200, what="the node with the edge certificate serving")
        wait_for(lambda: "xds.unauthorized" in daemon.log(), what="the other fleet's certificate refused")
        for envoy in (wrong, anonymous):
            assert envoy.stats("control_plane.connected_state")["control_plane.connected_state"] == 0
            assert answers(envoy.address) == 0  # no listener: it got nothing
        assert [n["id"] for n in daemon.fleet("edge")["nodes"]] == ["gw-1"]
        assert right.stats("control_plane.connected_state")["control_plane.connected_state"] == 1
    finally:
        upstream.stop()


def test_only_commits_signed_by_trusted_keys_are_applied(
    tmp_path: Path, remote: GitRemote, start_daemon: Callable[..., DaemonProcess],
    start_envoy: Callable[..., EnvoyProcess],
) -> None:  # fmt: skip
    trusted, stranger = ssh_key(tmp_path, "trusted"), ssh_key(tmp_path, "stranger")
    signers = allowed_signers(tmp_path, trusted)
    upstream = EchoServer("backend").start()
    try:
        http_port = free_port()
        remote.signing = ssh_signing(trusted)
        first = repo_with_tls_gateway(remote, upstream, http_port, free_port(), "v1")
        daemon = start_daemon(remote.url, extra={"repo": {"verify_signatures": {"ssh_allowed_signers": str(signers)}}})
        start_envoy("edge", "edge-1", daemon.xds_port)

        def answers(path: str) -> int:
            return requests.get(f"http://127.0.0.1:{http_port}{path}", headers={"Host": HOST}, timeout=2).status_code

        wait_for(lambda: answers("/v1") == 200, what="the signed revision served")
        remote.signing = ssh_signing(stranger)
        unsigned = repo_with_tls_gateway(remote, upstream, http_port, free_port(), "v2")
        entry = wait_for(lambda: next((h for h in daemon.fleet("edge")["history"] if h["revision"] == unsigned), None),
                         what="the stranger's commit judged")  # fmt: skip
        assert entry["result"] == "Rejected" and unsigned[:12] in entry["reason"]
        remote.signing = ssh_signing(trusted)  # a trusted commit on top still carries the stranger's content
        on_top = repo_with_tls_gateway(remote, upstream, http_port, free_port(), "v3")
        entry = wait_for(lambda: next((h for h in daemon.fleet("edge")["history"] if h["revision"] == on_top), None),
                         what="the commit on top judged")  # fmt: skip
        assert entry["result"] == "Rejected" and unsigned[:12] in entry["reason"]
        assert answers("/v1") == 200 and daemon.fleet("edge")["last_good_revision"] == first
    finally:
        upstream.stop()
