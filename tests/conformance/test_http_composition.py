"""How VirtualServices combine, through a real Envoy: several VSs on one host (merged in a fixed, documented
order with catch-alls last) and delegate VirtualServices merged under their root's match."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.harness import CaseRejected, XdsHarness
from tests.conformance.http_upstreams import (
    ScriptedUpstream,
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

HOST = "shop.example.com"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, ScriptedUpstream]]:
    with started("v1", "v2", "v3") as servers:
        yield servers


def to(subset: str) -> str:
    return f"route: [{{destination: {{host: shop.internal, subset: {subset}}}}}]"


def virtual_service(name: str, rules: str) -> str:
    return http_routes(name, f"[{HOST}]", rules)


def delegate(name: str, rules: str, namespace: str = "default", export_to: str = "") -> str:
    export = f"  exportTo: {export_to}\n" if export_to else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{export}  http:
{rules}
"""


def serve(harness: XdsHarness, upstreams: dict[str, ScriptedUpstream], *virtual_services: str) -> int:
    return serve_http(harness, "shop.internal", upstreams, *virtual_services)


def served_by(port: int, path: str) -> str:
    response = get(port, path, host=HOST)
    assert response.status_code == 200, (path, response.status_code)
    return response.headers["x-upstream"]


# ---------------------------------------------------------------------------------------------- merging


def test_several_virtual_services_merge_in_name_order(
    gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]
) -> None:
    """`b-cart` is written first but `a-catalog` sorts first; a-catalog's catch-all still moves last."""
    b_cart = virtual_service(
        "b-cart",
        f"  - match: [{{uri: {{prefix: /cart}}}}]\n    {to('v2')}\n"
        f"  - match: [{{uri: {{prefix: /shared}}}}]\n    {to('v2')}\n",
    )
    a_catalog = virtual_service(
        "a-catalog", f"  - match: [{{uri: {{prefix: /shared}}}}]\n    {to('v1')}\n  - {to('v3')}\n"
    )
    manifests = [b_cart, a_catalog]
    port = serve(gateway, upstreams, *manifests)
    assert served_by(port, "/shared") == "v1"  # a-catalog's rule comes first
    assert served_by(port, "/cart") == "v2"  # not shadowed by a-catalog's catch-all
    assert served_by(port, "/anything") == "v3"
    conflicts = [f for f in findings_of(documents(http_gateway(port), *manifests)) if f.code == "vs-host-conflict"]
    assert len(conflicts) == 1 and conflicts[0].severity == "warning"
    assert "default/a-catalog, default/b-cart" in conflicts[0].message


def test_catch_all_routes_move_behind_other_virtual_services(
    gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]
) -> None:
    first = virtual_service("first", f"  - match: [{{uri: {{regex: '.*'}}}}]\n    {to('v1')}\n")
    second = virtual_service("second", f"  - match: [{{headers: {{x-beta: {{exact: 'on'}}}}}}]\n    {to('v2')}\n")
    port = serve(gateway, upstreams, first, second)
    assert get(port, host=HOST, x_beta="on").headers["x-upstream"] == "v2"
    assert served_by(port, "/") == "v1"


# ---------------------------------------------------------------------------------------------- delegates


ROOT = virtual_service(
    "shop",
    "  - match: [{uri: {prefix: /reviews}}]\n"
    "    delegate: {name: reviews}\n"
    "  - match: [{uri: {prefix: /ratings}}]\n"
    "    timeout: 5s\n"
    "    headers: {response: {set: {x-root: ratings}}}\n"
    "    delegate: {name: ratings, namespace: team-ratings}\n",
)


def test_delegate_routes_under_the_root_match(gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]) -> None:
    reviews = delegate(
        "reviews",
        f"  - match: [{{uri: {{prefix: /reviews/v2}}}}]\n    {to('v2')}\n  - {to('v1')}\n",
    )
    ratings = delegate("ratings", f"  - {to('v3')}\n", namespace="team-ratings")
    port = serve(gateway, upstreams, ROOT, reviews, ratings)
    assert served_by(port, "/reviews/v2/1") == "v2"
    assert served_by(port, "/reviews/1") == "v1"  # the delegate's catch-all only covers the root's /reviews
    assert get(port, "/other", host=HOST).status_code == 404
    response = get(port, "/ratings/5", host=HOST)
    assert (response.headers["x-upstream"], response.headers["x-root"]) == ("v3", "ratings")  # inherited headers


def test_delegate_rule_outside_the_root_match_is_dropped(
    gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]
) -> None:
    reviews = delegate(
        "reviews",
        f"  - match: [{{uri: {{prefix: /admin}}}}]\n    {to('v3')}\n  - {to('v1')}\n",
    )
    ratings = delegate("ratings", f"  - {to('v3')}\n", namespace="team-ratings")
    manifests = [ROOT, reviews, ratings]
    port = serve(gateway, upstreams, *manifests)
    assert get(port, "/admin", host=HOST).status_code == 404
    assert served_by(port, "/reviews") == "v1"
    found = findings_of(documents(http_gateway(port), service("shop.internal", {}), *manifests))
    assert "delegate-route-conflict" in codes(found)


def test_delegate_not_exported_to_the_root_is_an_error(
    gateway: XdsHarness, upstreams: dict[str, ScriptedUpstream]
) -> None:
    reviews = delegate("reviews", f"  - {to('v1')}\n")
    ratings = delegate("ratings", f"  - {to('v3')}\n", namespace="team-ratings", export_to="['.']")
    with pytest.raises(CaseRejected, match="delegate-not-exported"):
        serve(gateway, upstreams, ROOT, reviews, ratings)
