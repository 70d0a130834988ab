"""The CLI as users run it: real subprocesses, real Envoy validation of what `bootstrap` prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from reconciler.cli.localrun import envoy_binary

REPO_TEMPLATE = Path(__file__).resolve().parents[2] / "repo-template"


def reconciler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_bootstrap_is_a_valid_envoy_config(tmp_path: Path) -> None:
    done = reconciler(
        "bootstrap",
        "--fleet",
        "edge",
        "--node-id",
        "edge-1",
        "--xds-address",
        "127.0.0.1:18000",
        "--admin-port",
        "19001",
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["node"] == {
        "id": "edge-1",
        "cluster": "edge",
        "metadata": {"admin_url": "http://127.0.0.1:19001", "fleet": "edge"},
    }
    path = tmp_path / "bootstrap.yaml"
    path.write_text(done.stdout)
    checked = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_bootstrap_rejects_a_bad_address() -> None:
    done = reconciler("bootstrap", "--fleet", "f", "--node-id", "n", "--xds-address", "nohostport", "--admin-port", "1")
    assert done.returncode == 2
    assert "HOST:PORT" in done.stderr and "Traceback" not in done.stderr


def test_render_is_deterministic_and_names_resources_as_istiod() -> None:
    first = reconciler("render", str(REPO_TEMPLATE), "--fleet", "public-ingress", "--format", "json")
    second = reconciler("render", str(REPO_TEMPLATE), "--fleet", "public-ingress", "--format", "json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    rendered = json.loads(first.stdout)
    assert [listener["name"] for listener in rendered["listeners"]] == ["0.0.0.0_8080"]
    assert [route["name"] for route in rendered["routes"]] == ["http.8080"]
    assert "outbound|80|blue|shop.internal" in [cluster["name"] for cluster in rendered["clusters"]]
    as_yaml = reconciler("render", str(REPO_TEMPLATE), "--fleet", "public-ingress")
    assert yaml.safe_load(as_yaml.stdout) == rendered


def test_render_unknown_fleet_is_a_sentence() -> None:
    done = reconciler("render", str(REPO_TEMPLATE), "--fleet", "nope")
    assert done.returncode == 1
    assert "no Fleet named 'nope'" in done.stderr and "public-ingress" in done.stderr


def test_template_repo_validates() -> None:
    done = reconciler("validate", str(REPO_TEMPLATE))
    assert done.returncode == 0, done.stdout
    assert "valid, 0 error(s)" in done.stdout


def test_run_with_a_bad_config_file_names_the_place(tmp_path: Path) -> None:
    config = tmp_path / "reconciler.yaml"
    config.write_text("repo:\n  url: file:///x\n  pol_interval: 5s\n")
    done = reconciler("run", "--config", str(config))
    assert done.returncode == 2
    assert f"{config}:3:3" in done.stderr and "poll_interval" in done.stderr
    assert "Traceback" not in done.stderr


def test_status_unreachable_exits_1() -> None:
    done = reconciler("status", "--api", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert "cannot reach the daemon API" in done.stderr
