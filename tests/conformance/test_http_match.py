"""HTTP match conditions through a real Envoy: every HTTPMatchRequest field, match names, per-match gateways,
ports, and sourceLabels/sourceNamespace evaluated against the gateway itself (as istiod does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from reconciler.cli.localrun import free_port
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import (
    ScriptedUpstream,
    active_route_config,
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
BACKEND = "app.internal"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, ScriptedUpstream]]:
    with started("v1", "v2") as servers:
        yield servers


def routes(rules: str, gateways: str = "[gw]", hosts: str = f"[{HOST}]") -> str:
    """A VirtualService whose `http` is `rules` (YAML indented for `http:`), named `app`."""
    return http_routes("app", hosts, rules, gateways)


TO_V1 = "route: [{destination: {host: app.internal, subset: v1}}]"
TO_V2 = "route: [{destination: {host: app.internal, subset: v2}}]"


def serve(harness: XdsHarness, upstreams: dict[str, ScriptedUpstream], rules: str) -> int:
    """Apply one gateway (a fresh port) + the app service + a VS with `rules`; v1 is the fallback rule."""
    return serve_http(harness, BACKEND, upstreams, routes(rules + f"  - {TO_V1}\n"))


def upstream(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-upstream"]


def test_request_routing_by_end_user_header(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    """istio.io task "request routing": user jason sees reviews v2, everybody else v1."""
    port = serve(gateway, upstreams, f"  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]\n    {TO_V2}\n")
    assert upstream(get(port, end_user="jason")) == "v2"
    assert upstream(get(port, end_user="jason2")) == "v1"
    assert upstream(get(port)) == "v1"


def test_uri_regex_is_a_full_match(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    port = serve(gateway, upstreams, f"  - match: [{{uri: {{regex: '/items/[0-9]+'}}}}]\n    {TO_V2}\n")
    assert upstream(get(port, "/items/42")) == "v2"
    assert upstream(get(port, "/items/42/more")) == "v1"  # RE2 full match, not a search
    assert upstream(get(port, "/items/abc")) == "v1"


def test_ignore_uri_case(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = (
        f"  - match: [{{uri: {{exact: /Login}}, ignoreUriCase: true}}]\n    {TO_V2}\n"
        f"  - match: [{{uri: {{prefix: /Admin}}}}]\n    {TO_V2}\n"
    )
    port = serve(gateway, upstreams, rules)
    assert upstream(get(port, "/LOGIN")) == "v2"
    assert upstream(get(port, "/login")) == "v2"
    assert upstream(get(port, "/Admin/x")) == "v2"
    assert upstream(get(port, "/admin/x")) == "v1"  # case sensitive by default


def test_method_scheme_and_authority(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = (
        f"  - match: [{{method: {{exact: POST}}}}]\n    {TO_V2}\n"
        f"  - match: [{{scheme: {{exact: https}}, uri: {{prefix: /s}}}}]\n    {TO_V2}\n"
        f"  - match: [{{authority: {{regex: 'app\\.example\\.com:9.*'}}}}]\n    {TO_V2}\n"
    )
    port = serve(gateway, upstreams, rules)
    post = requests.post(f"http://127.0.0.1:{port}/", headers={"Host": HOST}, timeout=5)
    assert upstream(post) == "v2"
    assert upstream(get(port)) == "v1"
    assert upstream(get(port, "/s")) == "v1"  # plain HTTP: :scheme is http
    assert upstream(get(port, host=f"{HOST}:9443")) == "v2"  # authority matches the Host header as sent
    assert upstream(get(port, host=f"{HOST}:8443")) == "v1"


def test_header_prefix_regex_and_presence(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = (
        f"  - match: [{{headers: {{x-team: {{prefix: pay}}}}}}]\n    {TO_V2}\n"
        f"  - match: [{{headers: {{x-build: {{regex: '[0-9]+'}}}}}}]\n    {TO_V2}\n"
        f"  - match: [{{headers: {{x-debug: {{}}}}}}]\n    {TO_V2}\n"
    )
    port = serve(gateway, upstreams, rules)
    assert upstream(get(port, x_team="payments")) == "v2"
    assert upstream(get(port, x_team="search")) == "v1"
    assert upstream(get(port, x_build="123")) == "v2"
    assert upstream(get(port, x_build="12a")) == "v1"
    assert upstream(get(port, x_debug="")) == "v2"  # `{}`: present, whatever the value
    assert upstream(get(port)) == "v1"


def test_without_headers(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = (
        f"  - match: [{{uri: {{prefix: /a}}, withoutHeaders: {{x-canary: {{exact: 'true'}}}}}}]\n    {TO_V2}\n"
        f"  - match: [{{uri: {{prefix: /b}}, withoutHeaders: {{x-internal: {{}}}}}}]\n    {TO_V2}\n"
        f"  - match: [{{uri: {{prefix: /c}}, withoutHeaders: {{x-internal: {{regex: '*'}}}}}}]\n    {TO_V2}\n"
    )
    port = serve(gateway, upstreams, rules)
    assert upstream(get(port, "/a")) == "v2"  # a missing header is "" and "" is not "true"
    assert upstream(get(port, "/a", x_canary="false")) == "v2"
    assert upstream(get(port, "/a", x_canary="true")) == "v1"
    assert upstream(get(port, "/b")) == "v2"
    assert upstream(get(port, "/b", x_internal="1")) == "v1"
    assert upstream(get(port, "/c")) == "v2"  # `regex: "*"` means "present" here (Istio allows it only here)
    assert upstream(get(port, "/c", x_internal="")) == "v1"


def test_query_params(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = (
        f"  - match: [{{queryParams: {{version: {{exact: '2'}}}}}}]\n    {TO_V2}\n"
        f"  - match: [{{queryParams: {{id: {{regex: '[a-f]+'}}}}}}]\n    {TO_V2}\n"
        f"  - match: [{{queryParams: {{debug: {{}}}}}}]\n    {TO_V2}\n"
    )
    port = serve(gateway, upstreams, rules)
    assert upstream(get(port, "/?version=2")) == "v2"
    assert upstream(get(port, "/?version=20")) == "v1"
    assert upstream(get(port, "/?id=cafe")) == "v2"
    assert upstream(get(port, "/?id=cafe1")) == "v1"
    assert upstream(get(port, "/?debug")) == "v2"
    assert upstream(get(port, "/?other=1")) == "v1"


def test_several_matches_are_or_and_fields_are_and(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rule = "  - match:\n    - {uri: {prefix: /x}, headers: {x-a: {exact: '1'}}}\n    - {uri: {prefix: /y}}\n"
    port = serve(gateway, upstreams, rule + f"    {TO_V2}\n")
    assert upstream(get(port, "/x", x_a="1")) == "v2"
    assert upstream(get(port, "/x")) == "v1"
    assert upstream(get(port, "/y")) == "v2"


def test_match_port_selects_the_server(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    first, second = free_port(), free_port()
    rules = f"  - match: [{{port: {second}}}]\n    {TO_V2}\n  - {TO_V1}\n"
    manifests = documents(gateway_with_ports(first, second), service(BACKEND, dict(upstreams)), routes(rules))
    apply(gateway, manifests, first, second)
    assert upstream(get(first)) == "v1"
    assert upstream(get(second)) == "v2"


def gateway_with_ports(*ports: int) -> str:
    servers = "".join(f"  - port: {{number: {p}, name: http-{p}, protocol: HTTP}}\n    hosts: ['*']\n" for p in ports)
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{app: conformance-gateway}}
  servers:
{servers}"""


def test_match_gateways_narrow_per_gateway(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    port_a, port_b = free_port(), free_port()
    rules = f"  - match: [{{gateways: [gw-b], uri: {{prefix: /}}}}]\n    {TO_V2}\n  - {TO_V1}\n"
    manifests = documents(
        http_gateway(port_a, name="gw-a"),
        http_gateway(port_b, name="gw-b"),
        service(BACKEND, dict(upstreams)),
        routes(rules, gateways="[gw-a, gw-b]"),
    )
    apply(gateway, manifests, port_a, port_b)
    assert upstream(get(port_a)) == "v1"  # the match is only for gw-b
    assert upstream(get(port_b)) == "v2"
    assert "match-gateway-not-bound" not in codes(findings_of(manifests))


def test_match_gateway_outside_the_vs_gateways_is_reported() -> None:
    rules = f"  - match: [{{gateways: [other]}}]\n    {TO_V2}\n  - {TO_V1}\n"
    found = findings_of(documents(http_gateway(8080), service(BACKEND, {}), routes(rules)))
    assert "match-gateway-not-bound" in codes(found)


def test_source_labels_are_the_gateways_own(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    """sourceLabels compare with the fleet's labels: a foreign label deletes the match (and we say so),
    the gateway's own label keeps it; sourceNamespace compares with the Gateway's namespace."""
    rules = (
        f"  - match: [{{uri: {{prefix: /web}}, sourceLabels: {{app: web-frontend}}}}]\n    {TO_V2}\n"
        f"  - match: [{{uri: {{prefix: /own}}, sourceLabels: {{app: conformance-gateway}}}}]\n    {TO_V2}\n"
        f"  - match: [{{uri: {{prefix: /ns}}, sourceNamespace: default}}]\n    {TO_V2}\n"
        f"  - match: [{{uri: {{prefix: /other-ns}}, sourceNamespace: shop}}]\n    {TO_V2}\n"
    )
    port = serve(gateway, upstreams, rules)
    assert upstream(get(port, "/web")) == "v1"
    assert upstream(get(port, "/own")) == "v2"
    assert upstream(get(port, "/ns")) == "v2"
    assert upstream(get(port, "/other-ns")) == "v1"
    found = findings_of(
        documents(http_gateway(port), service(BACKEND, dict(upstreams)), routes(rules + f"  - {TO_V1}\n"))
    )
    warned = [(f.code, f.severity.value) for f in found if f.code.startswith("source-")]
    assert sorted(warned) == [("source-labels-on-gateway", "warning")] * 2 + [
        ("source-namespace-on-gateway", "warning")
    ]


def test_route_names_are_rule_dot_match(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    rules = (
        f"  - name: reviews\n    match: [{{name: jason, headers: {{end-user: {{exact: jason}}}}}}, "
        f"{{uri: {{prefix: /v2}}}}]\n    {TO_V2}\n"
    )
    port = serve(gateway, upstreams, rules)
    config = active_route_config(gateway, port)
    names = [route.get("name", "") for vhost in config["virtual_hosts"] for route in vhost["routes"]]
    assert names == ["reviews.jason", "reviews", ""]


def test_rules_after_a_catch_all_are_dropped(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    port = serve(gateway, upstreams, f"  - {TO_V2}\n  - match: [{{uri: {{prefix: /never}}}}]\n    {TO_V1}\n")
    assert upstream(get(port, "/never")) == "v2"
