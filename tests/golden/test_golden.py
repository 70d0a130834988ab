"""Manifests in, rendered xDS out: every case under tests/golden/cases (see README.md there)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from reconciler.cli.commands.render import dump
from reconciler.pipeline import build

CASES = Path(__file__).parent / "cases"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if (p / "manifests.yaml").exists())


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    result = build({"manifests.yaml": (case / "manifests.yaml").read_bytes()})
    findings = [{"code": f.code, "severity": f.severity.value, "at": str(f.location)} for f in result.findings]
    outputs = {f"{fleet}.expected.yaml": dump(s.to_dict(), "yaml") for fleet, s in result.snapshots.items()}
    if findings:
        outputs["findings.expected.yaml"] = yaml.safe_dump(findings, sort_keys=False)
    if UPDATE:
        for stale in case.glob("*.expected.yaml"):
            stale.unlink()
        for name, text in outputs.items():
            (case / name).write_text(text)
    expected = {p.name: p.read_text() for p in case.glob("*.expected.yaml")}
    assert expected, f"{case.name} has no expected output; run with UPDATE_GOLDEN=1 and review it"
    assert outputs == expected
