"""One Envoy + in-process ADS server per conformance module (cases reconfigure it, which costs ~ms)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.cli.localrun import EchoServer
from tests.conformance.harness import XdsHarness


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdsHarness]:
    harness = XdsHarness(tmp_path_factory.mktemp("conformance")).start()
    yield harness
    harness.stop()


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, EchoServer]]:
    """Two echo upstreams, `v1` and `v2` (the subsets most cases route between)."""
    servers = {name: EchoServer(name).start() for name in ("v1", "v2")}
    yield servers
    for server in servers.values():
        server.stop()
