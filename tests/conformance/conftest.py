"""One Envoy + in-process ADS server per conformance module (cases reconfigure it, which costs ~ms)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.harness import XdsHarness


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdsHarness]:
    harness = XdsHarness(tmp_path_factory.mktemp("conformance")).start()
    yield harness
    harness.stop()
