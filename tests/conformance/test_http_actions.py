"""What a matched route does, through a real Envoy: redirect, directResponse, rewrite, header operations
(route level and per destination) and Istio >= 1.15 weight rules."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from reconciler.cli.localrun import free_port
from tests.conformance.harness import CaseRejected, XdsHarness
from tests.conformance.http_upstreams import (
    ScriptedUpstream,
    apply,
    codes,
    documents,
    findings_of,
    get,
    http_gateway,
    http_routes,
    serve_http,
    service,
    started,
)

HOST = "app.example.com"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, ScriptedUpstream]]:
    with started("v1", "v2") as servers:
        yield servers


def virtual_service(rules: str) -> str:
    return http_routes("app", f"[{HOST}]", rules)


def manifests(port: int, upstreams: dict[str, ScriptedUpstream], rules: str) -> str:
    return documents(http_gateway(port), service("app.internal", upstreams), virtual_service(rules))


def serve(harness: XdsHarness, upstreams: dict[str, ScriptedUpstream], rules: str) -> int:
    return serve_http(harness, "app.internal", upstreams, virtual_service(rules))


def echoed(response: requests.Response) -> dict[str, object]:
    assert response.status_code == 200, response.text
    payload: dict[str, object] = response.json()
    return payload


# ---------------------------------------------------------------------------------------------- redirect


def test_redirect_uri_and_authority_default_301(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    port = serve(gateway, upstreams, "  - redirect: {uri: /v1/bookinfo, authority: new.example.com}\n")
    response = get(port, "/old?x=1")
    assert response.status_code == 301
    assert response.headers["location"] == "http://new.example.com/v1/bookinfo?x=1"


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_codes(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream], code: int) -> None:
    port = serve(gateway, upstreams, f"  - redirect: {{uri: /elsewhere, redirectCode: {code}}}\n")
    response = get(port, "/here")
    assert response.status_code == code
    assert response.headers["location"] == f"http://{HOST}/elsewhere"


def test_redirect_scheme_and_port(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = (
        "  - match: [{uri: {prefix: /secure}}]\n    redirect: {scheme: https, port: 8443}\n"
        "  - match: [{uri: {prefix: /plain}}]\n    redirect: {port: 80, authority: www.example.com}\n"
        "  - match: [{uri: {prefix: /same-port}}]\n"
        "    redirect: {derivePort: FROM_REQUEST_PORT, authority: b.example.com}\n"
        "  - match: [{uri: {prefix: /default-port}}]\n"
        "    redirect: {derivePort: FROM_PROTOCOL_DEFAULT, scheme: https}\n"
    )
    port = serve(gateway, upstreams, rules)
    assert get(port, "/secure/a").headers["location"] == f"https://{HOST}:8443/secure/a"
    assert get(port, "/same-port").headers["location"] == f"http://b.example.com:{port}/same-port"
    # The port asked for, even a scheme's default and whatever port the client's Host carried (istiod elides
    # :80/:443, and Envoy then keeps the client's port: https://app.example.com:<listener port>/...).
    client_host = f"{HOST}:{port}"
    assert get(port, "/plain", host=client_host).headers["location"] == "http://www.example.com:80/plain"
    assert get(port, "/default-port", host=client_host).headers["location"] == f"https://{HOST}:443/default-port"


def test_redirect_scheme_keeps_only_a_non_default_client_port(
    gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]
) -> None:
    """Envoy's own rule for a scheme change without a port: drop the old scheme's default port, keep others."""
    port = serve(gateway, upstreams, "  - redirect: {scheme: https}\n")
    assert get(port, "/a", host=f"{HOST}:80").headers["location"] == f"https://{HOST}/a"
    assert get(port, "/a", host=f"{HOST}:1234").headers["location"] == f"https://{HOST}:1234/a"


def test_unsupported_redirect_code_is_an_error(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    """istiod silently drops the action of a redirect with code 300..399 other than 301/302/303/307/308."""
    rules = "  - redirect: {uri: /x, redirectCode: 305}\n"
    with pytest.raises(CaseRejected, match="invalid-redirect-code"):
        gateway.apply(manifests(free_port(), upstreams, rules))


# ---------------------------------------------------------------------------------------------- directResponse


def test_direct_response_string_bytes_and_empty(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    raw = b"\x00\x01binary\xff"
    rules = (
        "  - match: [{uri: {exact: /teapot}}]\n    directResponse: {status: 418, body: {string: short and stout}}\n"
        f"  - match: [{{uri: {{exact: /bytes}}}}]\n    directResponse: {{status: 200, body: {{bytes: "
        f"{base64.b64encode(raw).decode()}}}}}\n"
        "  - match: [{uri: {exact: /empty}}]\n    directResponse: {status: 204}\n"
    )
    port = serve(gateway, upstreams, rules)
    before = sum(len(s.requests) for s in upstreams.values())
    teapot = get(port, "/teapot")
    assert (teapot.status_code, teapot.text) == (418, "short and stout")
    assert get(port, "/bytes").content == raw
    empty = get(port, "/empty")
    assert (empty.status_code, empty.content) == (204, b"")
    assert sum(len(s.requests) for s in upstreams.values()) == before  # no upstream was asked


def test_direct_response_status_envoy_rejects_is_an_error() -> None:
    """Istio's webhook accepts status 600; Envoy NACKs it (and with it the whole route configuration)."""
    found = findings_of(manifests(8080, {}, "  - directResponse: {status: 600}\n"))
    assert "invalid-http-status" in codes(found)


# ---------------------------------------------------------------------------------------------- rewrite


def test_rewrite_prefix_exact_and_regex(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    to_v1 = "route: [{destination: {host: app.internal, subset: v1}}]"
    rules = (
        f"  - match: [{{uri: {{prefix: /api/}}}}]\n    rewrite: {{uri: /v1/}}\n    {to_v1}\n"
        f"  - match: [{{uri: {{exact: /old}}}}]\n    rewrite: {{uri: /brand/new}}\n    {to_v1}\n"
        f"  - match: [{{uri: {{prefix: /service/}}}}]\n"
        f"    rewrite: {{uriRegexRewrite: {{match: '^/service/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1'}}}}\n"
        f"    {to_v1}\n"
    )
    port = serve(gateway, upstreams, rules)
    assert echoed(get(port, "/api/users?page=2"))["path"] == "/v1/users?page=2"
    assert echoed(get(port, "/old?q=1"))["path"] == "/brand/new?q=1"  # after an exact match: the whole path
    assert echoed(get(port, "/service/foo/bar"))["path"] == "/bar/instance/foo"


def test_rewrite_authority(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = "  - rewrite: {authority: backend.internal}\n    route: [{destination: {host: app.internal, subset: v1}}]\n"
    port = serve(gateway, upstreams, rules)
    headers = echoed(get(port))["headers"]
    assert isinstance(headers, dict)
    assert headers["host"] == "backend.internal"


# ---------------------------------------------------------------------------------------------- headers


def test_route_level_header_operations(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = """  - headers:
      request:
        set: {x-env: prod, x-replaced: new}
        add: {x-added: one}
        remove: [x-secret]
      response:
        set: {x-served-by: gateway}
        add: {x-extra: more}
        remove: [x-upstream]
    route: [{destination: {host: app.internal, subset: v1}}]
"""
    port = serve(gateway, upstreams, rules)
    response = get(port, x_replaced="old", x_added="zero", x_secret="s3cr3t")
    seen = echoed(response)["headers"]
    assert isinstance(seen, dict)
    assert seen["x-env"] == "prod"
    assert seen["x-replaced"] == "new"
    assert seen["x-added"] == "zero,one"  # add appends
    assert "x-secret" not in seen
    assert response.headers["x-served-by"] == "gateway"
    assert response.headers["x-extra"] == "more"
    assert "x-upstream" not in response.headers


def test_authority_header_set_is_a_host_rewrite(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = (
        "  - headers: {request: {set: {':authority': rewritten.internal}}}\n"
        "    route: [{destination: {host: app.internal, subset: v1}}]\n"
    )
    port = serve(gateway, upstreams, rules)
    seen = echoed(get(port))["headers"]
    assert isinstance(seen, dict)
    assert seen["host"] == "rewritten.internal"


def test_per_destination_headers(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = """  - match: [{uri: {prefix: /single}}]
    headers: {response: {set: {x-route: single}}}
    route:
    - destination: {host: app.internal, subset: v1}
      headers: {request: {set: {x-dest: v1, host: v1.internal}}, response: {add: {x-dest: v1}}}
  - route:
    - destination: {host: app.internal, subset: v1}
      weight: 50
      headers: {request: {add: {x-dest: v1, ':authority': v1.internal}}, response: {set: {x-dest: v1}}}
    - destination: {host: app.internal, subset: v2}
      weight: 50
      headers: {request: {set: {x-dest: v2}}, response: {set: {x-dest: v2}}}
"""
    port = serve(gateway, upstreams, rules)
    single = get(port, "/single")
    seen = echoed(single)["headers"]
    assert isinstance(seen, dict)
    assert (seen["x-dest"], seen["host"]) == ("v1", "v1.internal")
    assert (single.headers["x-route"], single.headers["x-dest"]) == ("single", "v1")
    for _ in range(20):
        response = get(port, "/split")
        payload = echoed(response)
        assert response.headers["x-dest"] == payload["upstream"]  # each cluster's own response header
        headers = payload["headers"]
        assert isinstance(headers, dict)
        assert headers["x-dest"] == payload["upstream"]
        assert headers["host"] == ("v1.internal" if payload["upstream"] == "v1" else HOST)


# ---------------------------------------------------------------------------------------------- weights


def route_weights(v1: int, v2: int) -> str:
    return (
        "  - route:\n"
        f"    - {{destination: {{host: app.internal, subset: v1}}, weight: {v1}}}\n"
        f"    - {{destination: {{host: app.internal, subset: v2}}, weight: {v2}}}\n"
    )


def test_zero_weight_destination_gets_nothing(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    port = serve(gateway, upstreams, route_weights(0, 1))
    assert {echoed(get(port))["upstream"] for _ in range(30)} == {"v2"}


def test_weights_are_relative(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    """Since Istio 1.15 weights need not sum to 100: 1:3 sends a quarter to v1."""
    port = serve(gateway, upstreams, route_weights(1, 3))
    total = 300
    counts = Counter(echoed(get(port))["upstream"] for _ in range(total))
    expected, sigma = total / 4, (total * 0.25 * 0.75) ** 0.5
    assert abs(counts["v1"] - expected) <= 4 * sigma, counts


def test_single_destination_weight_is_ignored(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = "  - route: [{destination: {host: app.internal, subset: v2}, weight: 0}]\n"
    port = serve(gateway, upstreams, rules)
    assert echoed(get(port))["upstream"] == "v2"


def test_all_zero_weights_are_an_error() -> None:
    assert "zero-total-weight" in codes(findings_of(manifests(8080, {}, route_weights(0, 0))))


def test_destination_port_picks_the_service_port(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    """A two-port service: the destination's port selects the cluster (and so the endpoint's target port)."""
    port = free_port()
    two_ports = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: multi}}
spec:
  hosts: [multi.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 81, name: admin, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {upstreams["v1"].port}, admin: {upstreams["v2"].port}}}}}]
"""
    rules = (
        "  - match: [{uri: {prefix: /admin}}]\n"
        "    route: [{destination: {host: multi.internal, port: {number: 81}}}]\n"
        "  - route: [{destination: {host: multi.internal, port: {number: 80}}}]\n"
    )
    apply(gateway, documents(http_gateway(port), two_ports, virtual_service(rules)), port)
    assert echoed(get(port, "/admin"))["upstream"] == "v2"
    assert echoed(get(port, "/"))["upstream"] == "v1"
