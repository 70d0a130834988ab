"""Traffic mirroring through a real Envoy (istio.io task "mirroring"): the mirror gets a copy with the
`-shadow` host suffix, its answer is ignored, and percentages hold."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import (
    ScriptedUpstream,
    active_route_config,
    get,
    http_routes,
    serve_http,
    service,
    started,
)
from tests.support import wait_for

HOST = "httpbin.example.com"
TO_V1 = "route: [{destination: {host: httpbin.internal, subset: v1}, weight: 100}]"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, ScriptedUpstream]]:
    with started("v1", "v2", "v3") as servers:
        yield servers


def serve(harness: XdsHarness, upstreams: dict[str, ScriptedUpstream], rule: str, *extra: str) -> int:
    vs = http_routes("httpbin", f"[{HOST}]", f"  - {TO_V1}\n    {rule}\n")
    return serve_http(harness, "httpbin.internal", upstreams, vs, *extra)


def send(port: int, count: int = 1) -> str:
    """`count` requests tagged with a fresh key; every answer must come from v1. Returns the key."""
    key = uuid.uuid4().hex
    for _ in range(count):
        response = get(port, "/headers", host=HOST, x_request_key=key)
        assert (response.status_code, response.headers["x-upstream"]) == (200, "v1")
    return key


def test_mirror_gets_a_shadow_copy(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    port = serve(gateway, upstreams, "mirror: {host: httpbin.internal, subset: v2}\n    mirrorPercentage: {value: 100}")
    key = send(port)
    copies = wait_for(lambda: upstreams["v2"].received(**{"x-request-key": key}), timeout=5, what="the mirrored copy")
    assert copies[0]["headers"]["host"] == f"{HOST}-shadow"
    assert copies[0]["path"] == "/headers"


def test_mirror_failure_is_ignored(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    """A mirror without any endpoint (every copy fails) changes nothing for the client."""
    port = serve(gateway, upstreams, "mirror: {host: nowhere.internal}", service("nowhere.internal", {}))
    send(port, 5)


def test_zero_mirror_percentage_mirrors_nothing(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    port = serve(gateway, upstreams, "mirror: {host: httpbin.internal, subset: v2}\n    mirrorPercentage: {value: 0}")
    key = send(port, 10)
    time.sleep(0.2)  # mirrored copies are sent alongside the request; give any stray one time to land
    assert not upstreams["v2"].received(**{"x-request-key": key})
    assert "request_mirror_policies" not in active_route_config(gateway, port)["virtual_hosts"][0]["routes"][0]["route"]


def test_several_mirrors_with_percentages(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rule = (
        "mirrors:\n"
        "    - {destination: {host: httpbin.internal, subset: v2}}\n"
        "    - {destination: {host: httpbin.internal, subset: v3}, percentage: {value: 30}}"
    )
    port = serve(gateway, upstreams, rule)
    total = 200
    key = send(port, total)
    wait_for(lambda: len(upstreams["v2"].received(**{"x-request-key": key})) == total, timeout=5, what="every v2 copy")
    mirrored = len(upstreams["v3"].received(**{"x-request-key": key}))
    expected, sigma = total * 0.3, (total * 0.3 * 0.7) ** 0.5
    assert abs(mirrored - expected) <= 4 * sigma, mirrored
