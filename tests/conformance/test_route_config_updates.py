"""A change to one port's routes re-sends that port's route configuration only (SotW RDS may be partial);
Envoy keeps serving the other one unchanged and applies the new one."""

from __future__ import annotations

import requests

from reconciler.cli.localrun import EchoServer, free_ports
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import apply, documents, get, http_gateway, http_routes, service


def route_to(name: str, subset: str, gateway: str) -> str:
    rules = f"  - route: [{{destination: {{host: app.internal, subset: {subset}}}}}]\n"
    return http_routes(name, f"[{name}.example.com]", rules, f"[{gateway}]")


def route_config_versions(gateway: XdsHarness) -> dict[str, str]:
    assert gateway.envoy is not None
    dump = requests.get(f"{gateway.envoy.admin_url}/config_dump?resource=dynamic_route_configs", timeout=5).json()
    return {c["route_config"]["name"]: c["version_info"] for c in dump["configs"]}


def test_one_port_changes_the_other_is_not_resent(gateway: XdsHarness, backends: dict[str, EchoServer]) -> None:
    first, second = free_ports(2)
    gateways = (http_gateway(first, "gw-a"), http_gateway(second, "gw-b"))
    base = documents(*gateways, service("app.internal", backends), route_to("a", "v1", "gw-a"))
    apply(gateway, documents(base, route_to("b", "v1", "gw-b")), first, second)
    before = route_config_versions(gateway)
    assert get(second, host="b.example.com").headers["x-upstream"] == "v1"

    apply(gateway, documents(base, route_to("b", "v2", "gw-b")))
    assert get(second, host="b.example.com").headers["x-upstream"] == "v2"
    assert get(first, host="a.example.com").headers["x-upstream"] == "v1"
    after = route_config_versions(gateway)
    # Envoy records, per route configuration, the version of the response that last carried it.
    assert after[f"http.{first}"] == before[f"http.{first}"]
    assert after[f"http.{second}"] != before[f"http.{second}"]
