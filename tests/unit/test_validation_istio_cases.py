"""Istio's validation cases (tests/data/istio_validation_cases.yaml) through the real pipeline, with verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.pipeline import build

CASES_FILE = Path(__file__).parents[1] / "data" / "istio_validation_cases.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text())

FLEET = {"apiVersion": "reconciler/v1", "kind": "Fleet", "metadata": {"name": "f"}, "spec": {"selector": {"app": "gw"}}}
SERVICE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {"name": "svc"},
    "spec": {
        "hosts": ["svc.example.com"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "STATIC",
        "endpoints": [
            {"address": "127.0.0.1", "labels": {"version": "v1"}},
            {"address": "127.0.0.2", "labels": {"version": "v2"}},
        ],
    },
}
SUBSETS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "svc"},
    "spec": {
        "host": "svc.example.com",
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
    },
}
DEFAULT_SERVER = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}


def manifests(case: dict[str, Any]) -> bytes:
    gateway_spec = case.get("gateway") or {"servers": [case.get("server", DEFAULT_SERVER)]}
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {"selector": {"app": "gw"}, **gateway_spec},
    }
    documents: list[Any] = [FLEET, SERVICE, SUBSETS, gateway]
    vs_spec = case.get("vs")
    if "http" in case:
        vs_spec = {"hosts": ["a.example.com"], "gateways": ["gw"], "http": [case["http"]]}
    if vs_spec is not None:
        documents.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "vs"},
                "spec": vs_spec,
            }
        )
    text = yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)
    if "extra" in case:
        text += "---\n" + case["extra"]
    return text.encode()


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 150
    assert len({c["name"] for c in CASES}) == len(CASES), "case names are unique"


def test_the_scaffolding_alone_is_valid_and_quiet() -> None:
    result = build({"case.yaml": manifests({})})
    assert result.findings == ()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_istio_case(case: dict[str, Any]) -> None:
    result = build({"case.yaml": manifests(case)})
    errors = {f.code for f in result.findings if f.is_error}
    warnings = {f.code for f in result.findings if not f.is_error}
    expected_errors = set(case.get("errors") or [])
    report = "\n".join(str(f) for f in result.findings)
    if expected_errors:
        assert expected_errors <= errors, f"expected errors {sorted(expected_errors)}, got:\n{report}"
    else:
        assert not errors, f"expected a valid config, got:\n{report}"
    assert set(case.get("warnings") or []) <= warnings, f"expected warnings {case.get('warnings')}, got:\n{report}"
    if not case.get("warnings") and not expected_errors:
        assert not warnings, f"expected no warning, got:\n{report}"
