"""deploy/: each recipe checked as far as this machine allows, with tools made for it.

- systemd units: `systemd-analyze verify` (syntax, known keys) and `systemd-analyze security --offline`
  (exposure score); skipped when systemd-analyze is not installed.
- Kubernetes: every manifest against the Kubernetes OpenAPI schema (kubernetes-validate, strict: unknown
  fields fail; schemas ship inside the package, no network), plus the security settings we promise.
- The daemon config examples load with the daemon's own loader; the Envoy bootstrap validates with Envoy.
- The Containerfile parses (dockerfile-parse) and is checked structurally: pinned base, non-root user.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from reconciler.cli.localrun import envoy_binary
from reconciler.daemon.config import load_config
from reconciler.xds.security import tls_transport_socket

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30"
INSTALL_BIN = "/opt/gateway-reconciler/bin/"  # where docs/operations.md installs the venv
UNITS = ["gateway-reconciler.service", "gateway-envoy.service"]


# ---------------------------------------------------------------------- systemd

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (package systemd)"
)


def unit_settings(name: str) -> dict[str, list[str]]:
    """Key → values of a unit's [Service] section (keys like LoadCredential repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture
def installed_units(tmp_path: Path) -> Path:
    """The units with their binaries pointed at stand-ins: verify checks that ExecStart's file exists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("reconciler", "envoy"):
        (bin_dir / program).write_text("#!/bin/sh\n")
        (bin_dir / program).chmod(0o755)
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text()
        assert INSTALL_BIN in text
        (tmp_path / name).write_text(text.replace(INSTALL_BIN, f"{bin_dir}/"))
    return tmp_path


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_systemd_units_verify_cleanly(installed_units: Path, unit: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(installed_units / unit)], capture_output=True, text=True
    )
    # Unknown keys are only warnings to systemd ("ignoring"): any output at all fails the test.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_systemd_units_have_a_low_exposure_score(installed_units: Path, unit: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(installed_units / unit)],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match is not None, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout  # systemd calls < 2 "OK"; a default unit scores 9.6


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_units_are_hardened(unit: str) -> None:
    settings = unit_settings(unit)
    required = {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
    }
    assert {k: settings.get(k, [""])[-1] for k in required} == required
    assert "@system-service" in settings["SystemCallFilter"]
    assert settings["RestrictAddressFamilies"][-1].split()[:3] == ["AF_UNIX", "AF_INET", "AF_INET6"]


def test_the_daemon_unit_keeps_no_capability_and_its_state_in_state_directory() -> None:
    settings = unit_settings("gateway-reconciler.service")
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["StateDirectory"] == ["gateway-reconciler"]
    config = load_config(DEPLOY / "reconciler.yaml")
    assert config.state.dir == "/var/lib/gateway-reconciler"  # what StateDirectory= creates


def test_the_envoy_unit_keeps_only_the_bind_capability() -> None:
    settings = unit_settings("gateway-envoy.service")
    assert settings["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert settings["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]


# ---------------------------------------------------------------------- Kubernetes


def kubernetes_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":  # a kustomize input, not a cluster resource
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in kubernetes_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}"
    return found[0]


@pytest.mark.parametrize(
    ("file", "doc"),
    [pytest.param(f, d, id=f"{f}:{d['kind']}/{d['metadata']['name']}") for f, d in kubernetes_documents()],
)
def test_kubernetes_manifests_match_the_schema(file: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    deployment = resource("Deployment", "gateway-reconciler")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    namespaces = {d["metadata"].get("namespace") for _, d in kubernetes_documents() if d["kind"] != "Namespace"}
    assert namespaces == {kustomization["namespace"]}


@pytest.mark.parametrize("name", ["gateway-reconciler", "public-ingress-gateway"])
def test_deployments_run_locked_down(name: str) -> None:
    pod = resource("Deployment", name)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert set(container["resources"]) == {"requests", "limits"}
        assert not container["image"].endswith(":latest") and ":" in container["image"]


def test_the_daemon_deployment_probes_mounts_and_secrets() -> None:
    pod = resource("Deployment", "gateway-reconciler")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"xds": 18000, "http-api": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-api"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-api"}
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"gateway-reconciler-webhook", "gateway-reconciler-api-tokens", "gateway-reconciler-xds-tls"}
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounted["state"] == "/var/lib/gateway-reconciler"
    service = resource("Service", "gateway-reconciler")
    assert sorted(p["port"] for p in service["spec"]["ports"]) == [8080, 18000]


def test_the_configmap_daemon_config_loads(tmp_path: Path) -> None:
    text = resource("ConfigMap", "gateway-reconciler-config")["data"]["reconciler.yaml"]
    (tmp_path / "reconciler.yaml").write_text(text)
    config = load_config(tmp_path / "reconciler.yaml")
    assert (config.xds.listen, config.api.listen) == ("0.0.0.0:18000", "0.0.0.0:8080")
    assert config.state.dir == "/var/lib/gateway-reconciler"


# ---------------------------------------------------------------------- the fleet member's bootstrap


def gateway_bootstrap() -> dict[str, Any]:
    text = resource("ConfigMap", "public-ingress-bootstrap")["data"]["bootstrap.yaml"]
    bootstrap: dict[str, Any] = yaml.safe_load(text)
    return bootstrap


def test_the_gateway_bootstrap_uses_the_generated_tls_transport_socket() -> None:
    cluster = gateway_bootstrap()["static_resources"]["clusters"][0]
    expected = tls_transport_socket(
        "/etc/envoy/xds-tls/ca.crt",
        "/etc/envoy/xds-tls/tls.crt",
        "/etc/envoy/xds-tls/tls.key",
        "gateway-reconciler.gateway-system.svc",
    )
    assert cluster["transport_socket"] == expected
    mounts = resource("Deployment", "public-ingress-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "xds-tls", "mountPath": "/etc/envoy/xds-tls", "readOnly": True} in mounts["volumeMounts"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a stand-in certificate")
def test_the_gateway_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    # Envoy's validate mode reads the TLS files: point them at a throwaway self-signed certificate.
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=stand-in"],
        check=True, capture_output=True,
    )  # fmt: skip
    text = resource("ConfigMap", "public-ingress-bootstrap")["data"]["bootstrap.yaml"]
    text = text.replace("/etc/envoy/xds-tls/ca.crt", str(cert)).replace("/etc/envoy/xds-tls/tls.crt", str(cert))
    (tmp_path / "bootstrap.yaml").write_text(text.replace("/etc/envoy/xds-tls/tls.key", str(key)))
    done = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(tmp_path / "bootstrap.yaml"), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------- the daemon config example


def test_the_example_daemon_config_loads() -> None:
    config = load_config(DEPLOY / "reconciler.yaml")
    assert config.repo.branch == "main"
    assert config.xds.listen.endswith(":18000") and config.api.listen.endswith(":8080")
    assert config.log.format == "json"


# ---------------------------------------------------------------------- the container image


def containerfile() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((DEPLOY / "container" / "Containerfile").read_bytes()))


def test_the_base_image_is_pinned() -> None:
    parser = containerfile()
    assert parser.parent_images, "no FROM"
    for image in parser.parent_images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", image
        assert re.match(r"\d+\.\d+\.\d+-", tag), f"{image}: pin an exact release"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    instructions = containerfile().structure
    final_stage = max(i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM")
    users = [ins["value"] for ins in instructions[final_stage:] if ins["instruction"] == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    entrypoint = [ins["value"] for ins in instructions if ins["instruction"] == "ENTRYPOINT"]
    assert entrypoint == ['["reconciler"]']


def test_the_image_copies_only_what_exists_and_fetches_nothing_by_url() -> None:
    for instruction in containerfile().structure:
        if instruction["instruction"] == "ADD":
            pytest.fail("use COPY: ADD fetches URLs and unpacks archives")
        if instruction["instruction"] == "COPY" and not instruction["value"].startswith("--from="):
            for source in instruction["value"].split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_the_compose_example_locks_containers_down() -> None:
    compose = yaml.safe_load((DEPLOY / "container" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert not service["user"].startswith("0"), name
        assert not service["image"].endswith(":latest"), name
