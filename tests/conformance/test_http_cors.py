"""corsPolicy through a real Envoy: preflights answered at the gateway, CORS headers on actual responses,
origin matching (exact, prefix, regex, the deprecated allowOrigin) and unmatchedPreflights."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import ScriptedUpstream, http_routes, serve_http, started

HOST = "api.example.com"
ROUTE = "route: [{destination: {host: api.internal}}]"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with started("api") as servers:
        yield servers["api"]


def serve(harness: XdsHarness, upstream: ScriptedUpstream, cors: str) -> int:
    vs = http_routes("api", f"[{HOST}]", f"  - corsPolicy: {cors}\n    {ROUTE}\n")
    return serve_http(harness, "api.internal", {"v1": upstream}, vs)


POLICY = """
      allowOrigins: [{exact: 'https://shop.example.com'}, {prefix: 'https://dev-'}, {regex: 'https://.*\\.partner\\.com'}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token, content-type]
      exposeHeaders: [x-upstream]
      maxAge: 24h
      allowCredentials: true"""


def preflight(port: int, origin: str) -> requests.Response:
    headers = {
        "Host": HOST,
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-token",
    }
    return requests.options(f"http://127.0.0.1:{port}/items", headers=headers, timeout=5)


def actual(port: int, origin: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}/items", headers={"Host": HOST, "Origin": origin}, timeout=5)


def forwarded_preflights(upstream: ScriptedUpstream, origin: str) -> int:
    return sum(1 for r in upstream.received(origin=origin) if r["method"] == "OPTIONS")


def test_preflight_is_answered_at_the_gateway(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(gateway, upstream, POLICY)
    origin = "https://shop.example.com"
    response = preflight(port, origin)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-methods"] == "GET,POST"
    assert response.headers["access-control-allow-headers"] == "x-token,content-type"
    assert response.headers["access-control-max-age"] == "86400"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert forwarded_preflights(upstream, origin) == 0


@pytest.mark.parametrize("origin", ["https://dev-alice.example.com", "https://eu.partner.com"])
def test_prefix_and_regex_origins(gateway: XdsHarness, upstream: ScriptedUpstream, origin: str) -> None:
    port = serve(gateway, upstream, POLICY)
    assert preflight(port, origin).headers["access-control-allow-origin"] == origin


def test_actual_request_gets_cors_headers(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(gateway, upstream, POLICY)
    response = actual(port, "https://shop.example.com")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert response.headers["access-control-expose-headers"] == "x-upstream"
    assert response.headers["access-control-allow-credentials"] == "true"


def test_unknown_origin_gets_no_cors_headers_and_is_forwarded(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(gateway, upstream, POLICY)
    origin = "https://evil.example.org"
    assert "access-control-allow-origin" not in actual(port, origin).headers
    response = preflight(port, origin)
    assert "access-control-allow-origin" not in response.headers
    assert forwarded_preflights(upstream, origin) == 1  # Istio's default: unmatched preflights go upstream


def test_unmatched_preflights_ignore(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(gateway, upstream, POLICY + "\n      unmatchedPreflights: IGNORE")
    origin = "https://ignored.example.org"
    response = preflight(port, origin)
    assert "access-control-allow-origin" not in response.headers
    assert forwarded_preflights(upstream, origin) == 0


def test_deprecated_allow_origin_is_exact(gateway: XdsHarness, upstream: ScriptedUpstream) -> None:
    port = serve(gateway, upstream, "{allowOrigin: ['https://old.example.com'], allowMethods: [GET]}")
    assert (
        preflight(port, "https://old.example.com").headers["access-control-allow-origin"] == "https://old.example.com"
    )
    assert "access-control-allow-origin" not in preflight(port, "https://old.example.com.evil").headers
