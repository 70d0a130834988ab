"""Which DestinationRule a destination host takes: its own, else the most specific wildcard covering it (istiod)."""

from __future__ import annotations

import pytest

from reconciler.pipeline import build
from reconciler.translate.cluster_policy import rule_for
from tests.unit.manifest_helpers import destination_rule, documents

RULES = documents(
    destination_rule("everything", "*"),
    destination_rule("dot-com", "*.com"),
    destination_rule("example", "*.example.com"),
    destination_rule("deep", "*.b.example.com"),
    destination_rule("exact", "a.example.com"),
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
    config = build({"rules.yaml": documents(destination_rule("example", "*.example.com")).encode()}).config
    assert rule_for(config, "shop.org") is None
