"""Which DestinationRule a destination host takes: its own, else the most specific wildcard covering it (istiod)."""

from __future__ import annotations

import pytest

from reconciler.pipeline import build
from reconciler.translate.cluster_policy import rule_for
from tests.unit.manifest_helpers import documents


def rule(name: str, host: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: "{host}"
"""


RULES = documents(
    rule("everything", "*"),
    rule("dot-com", "*.com"),
    rule("example", "*.example.com"),
    rule("deep", "*.b.example.com"),
    rule("exact", "a.example.com"),
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("a.example.com", "a.example.com"),  # its own rule beats every wildcard
        ("x.example.com", "*.example.com"),
        ("c.b.example.com", "*.b.example.com"),
        ("shop.com", "*.com"),
        ("shop.org", "*"),
    ],
)
def test_the_most_specific_covering_rule_wins(host: str, expected: str) -> None:
    config = build({"rules.yaml": RULES.encode()}).config
    chosen = rule_for(config, host)
    assert chosen is not None and chosen.host == expected


def test_no_rule_covers_a_host_when_no_wildcard_does() -> None:
    config = build({"rules.yaml": documents(rule("example", "*.example.com")).encode()}).config
    assert rule_for(config, "shop.org") is None
