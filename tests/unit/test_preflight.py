"""Preflight with the real Envoy: rejections are found, narrowed to the culprit and traced back to git."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from reconciler.cli.main import main
from reconciler.pipeline import Build, build
from reconciler.translate.snapshot import Snapshot
from reconciler.validation.preflight import Preflight, PreflightOptions, preflight
from tests.unit.manifest_helpers import FLEET, SERVICE, TO_APP, documents, gateway, http_server, virtual_service

BASE = documents(FLEET, gateway(http_server(8080)), SERVICE)


def routes_with_headers(*values: str) -> str:
    """A VirtualService whose rule i sets header x-i to values[i] (istio checks the syntax, Envoy the names)."""
    rules = (
        f'{{name: rule-{i}, match: [{{uri: {{prefix: /r{i}}}}}], headers: {{request: {{set: {{x-{i}: "{value}"}}}}}}, '
        f"{TO_APP}}}"
        for i, value in enumerate(values)
    )
    return virtual_service("routes", "a.example.com", *rules)


def built(*docs: str) -> Build:
    result = build({"gateway.yaml": documents(BASE, *docs).encode()})
    assert result.ok, [str(f) for f in result.findings]
    return result


def test_an_accepted_config_has_no_findings() -> None:
    assert preflight(built(routes_with_headers("%HOSTNAME%", "plain"))) == []


def test_each_rejected_route_is_traced_to_its_rule() -> None:
    result = built(routes_with_headers("ok", "%NOT_A_FIELD%", "fine", "also ok", "%ALSO_BAD%"))
    findings = preflight(result)
    assert {f.code for f in findings} == {"envoy-rejected"}
    messages = sorted(f.message for f in findings)
    assert len(messages) == 2
    assert "rule 'rule-1'" in messages[0] and "NOT_A_FIELD" in messages[0]
    assert "rule 'rule-4'" in messages[1] and "ALSO_BAD" in messages[1]
    vs = result.manifests.of_kind("VirtualService")[0]
    assert {f.location for f in findings} == {vs.locate("spec", "http", 1), vs.locate("spec", "http", 4)}


class CountingPreflight(Preflight):
    def __init__(self, options: PreflightOptions | None = None) -> None:
        super().__init__(options)
        self.runs = 0

    def run_envoy(self, bootstrap: Any) -> str | None:
        self.runs += 1
        return super().run_envoy(bootstrap)


def test_outcomes_are_cached_by_snapshot_version() -> None:
    result = built(routes_with_headers("%BAD%"))
    with CountingPreflight() as checker:
        first = checker.check(result)
        runs = checker.runs
        assert runs > 1  # the rejection was narrowed down
        assert checker.check(result) == first
        assert checker.runs == runs


def _cluster_snapshot(address: str) -> Snapshot:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=80))
        )
    )
    good = cluster_pb2.Cluster(name="outbound|80||good.internal", type=cluster_pb2.Cluster.STATIC)
    good.connect_timeout.seconds = 1
    bad = cluster_pb2.Cluster(name="outbound|80||bad.internal", type=cluster_pb2.Cluster.EDS)
    bad.connect_timeout.seconds = 1
    bad.eds_cluster_config.eds_config.ads.SetInParent()
    assignment = endpoint_pb2.ClusterLoadAssignment(
        cluster_name=bad.name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])]
    )
    return Snapshot.build([good, bad, assignment])


def test_a_rejected_cluster_is_named() -> None:
    with Preflight() as checker:
        assert checker.failures("edge", _cluster_snapshot("10.0.0.9")) == ()
        (failure,) = checker.failures("edge", _cluster_snapshot("not-an-ip"))
    assert (failure.kind, failure.name) == ("cluster", "outbound|80||bad.internal")
    assert "not-an-ip" in failure.message


def test_a_missing_envoy_binary_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    result = built(routes_with_headers("ok"))
    findings = preflight(result, PreflightOptions(envoy=str(tmp_path / "no-envoy")))
    assert [f.code for f in findings] == ["preflight-unavailable"]
    assert findings[0].resource == "Fleet default/edge"


def test_a_hung_envoy_is_cut_off(tmp_path: Path) -> None:
    slow = tmp_path / "slow-envoy"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    with Preflight(PreflightOptions(envoy=str(slow), timeout=0.3)) as checker:
        (failure,) = checker.failures("edge", built(routes_with_headers("ok")).snapshots["edge"])
    assert "did not finish validating within 0.3s" in failure.message


TLS_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: secure}
spec:
  selector: {app: gw}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, serverCertificate: /nonexistent/cert.pem, privateKey: /nonexistent/key.pem}
"""


def test_certificate_files_on_another_host_are_stood_in_for() -> None:
    result = built(routes_with_headers("ok").replace("gateways: [gw]", "gateways: [gw, secure]"), TLS_GATEWAY)
    assert preflight(result) == []
    local = preflight(result, PreflightOptions(files_are_local=True))
    assert [f.code for f in local] == ["envoy-rejected"]
    assert "/nonexistent/" in local[0].message


def test_validate_cli_runs_the_preflight(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text(documents(BASE, routes_with_headers("%NOPE%")))
    assert main(["validate", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["validate", str(tmp_path), "--preflight"]) == 1
    out = capsys.readouterr().out
    assert "envoy-rejected" in out and "config.yaml" in out


def test_the_pure_core_does_not_load_the_preflight() -> None:
    probe = "import sys, reconciler.pipeline, reconciler.plan; print('reconciler.validation.preflight' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
