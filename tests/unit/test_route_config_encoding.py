"""Route configurations are assembled from each virtual host's own bytes; the result must be exactly the
deterministic serialization of the whole message, and its version a function of those bytes alone, or versions
would differ between cached and fresh builds."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from bench.synthetic import RepoShape, generate
from reconciler.pipeline import build
from reconciler.pipeline_cache import BuildCache
from reconciler.translate import route_configs
from reconciler.translate.routes import (
    VirtualHostPlan,
    encode_plain_virtual_host,
    route_config_resource,
    virtual_host_entry,
)
from reconciler.translate.snapshot import (
    FIELDWISE_DIGEST_MIN_BYTES,
    ROUTE,
    XdsResource,
    content_digest,
    field_digest,
    resource_digest,
)


def route(name: str, prefix: str) -> rc.Route:
    return rc.Route(name=name, match=rc.RouteMatch(prefix=prefix), route=rc.RouteAction(cluster="c"))


def assert_canonical(body: bytes) -> route_pb2.RouteConfiguration:
    message = route_pb2.RouteConfiguration.FromString(body)
    assert message.SerializeToString(deterministic=True) == body
    return message


def assemble(name: str, port: int, plans: list[VirtualHostPlan]) -> XdsResource:
    entries = [virtual_host_entry(plan) for plan in plans]
    return route_config_resource(name, port, entries, [field_digest(entry) for entry in entries])


def test_assembled_bytes_are_the_canonical_serialization() -> None:
    many = tuple(route(f"r{i}", f"/p{i}/") for i in range(1000))  # a three-byte length prefix
    plans = [
        VirtualHostPlan("a.example", 80, (many,)),
        VirtualHostPlan("b.example", 80, ((route("x", "/"),), (route("y", "/y"),)), require_tls=True),
        VirtualHostPlan("c.example", 80, ()),
    ]
    resource = assemble("http.80", 80, plans)
    assert len(encode_plain_virtual_host(plans[0])) > 2**14
    message = assert_canonical(resource.body)
    assert resource.name == "http.80" and resource.type_url == ROUTE
    assert [v.name for v in message.virtual_hosts] == ["a.example:80", "b.example:80", "c.example:80"]
    assert [r.name for r in message.virtual_hosts[1].routes] == ["y", "x"]  # the catch-all moved last
    assert message.virtual_hosts[1].require_tls == rc.VirtualHost.ALL
    assert not message.validate_clusters.value and message.ignore_port_in_host_matching


def test_no_virtual_host_answers_404_from_a_blackhole() -> None:
    message = assert_canonical(route_config_resource("http.8080", 8080, [], []).body)
    assert [(v.name, list(v.domains)) for v in message.virtual_hosts] == [("blackhole:8080", ["*"])]


@pytest.mark.parametrize("hosts", [3, 300], ids=["small", "over a megabyte"])
def test_an_assembled_route_configs_version_is_that_of_its_bytes(hosts: int) -> None:
    """However it was assembled, a route configuration's version is `resource_digest` of its body: the plain
    content digest below FIELDWISE_DIGEST_MIN_BYTES (the versions of small configurations did not change), the
    digest of its fields' digests above, which translation gets from each virtual host's kept digest."""
    routes = tuple(route(f"r{i}", f"/{'p' * 40}{i}/") for i in range(100))
    resource = assemble("http.80", 80, [VirtualHostPlan(f"h{i}.example", 80, (routes,)) for i in range(hosts)])
    message = assert_canonical(resource.body)
    assert resource.digest == resource_digest(resource.body) == XdsResource.of(message).digest
    large = len(resource.body) >= FIELDWISE_DIGEST_MIN_BYTES
    assert large == (hosts == 300)
    assert (resource.digest == content_digest(resource.body)) != large
    other = assemble("http.80", 80, [VirtualHostPlan(f"h{i}.example", 80, (routes[1:],)) for i in range(hosts)])
    assert other.digest != resource.digest


def test_a_one_virtual_service_change_encodes_one_virtual_host_again(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = generate(RepoShape(40, fleets=1, gateways_per_fleet=1, vs_per_service=4))
    files = repo.files()
    cache = BuildCache()
    first = build(files, cache=cache)
    path = next(p for p in sorted(files) if b"kind: VirtualService" in files[p])
    files[path] = files[path].replace(b"/probe/", b"/probed/", 1)
    encoded: list[str] = []
    encode = route_configs.virtual_host_entry
    monkeypatch.setattr(route_configs, "virtual_host_entry", lambda plan: encoded.append(plan.host) or encode(plan))
    second = build(files, cache=cache)
    assert len(encoded) == 1  # the edited host only; the rest came back as bytes
    (name,) = first.snapshots[next(iter(first.snapshots))].of_type(ROUTE)
    before = first.snapshots[next(iter(first.snapshots))].of_type(ROUTE)[name].message()
    after = second.snapshots[next(iter(second.snapshots))].of_type(ROUTE)[name].message()
    changed = [a.name for a, b in zip(before.virtual_hosts, after.virtual_hosts, strict=True) if a != b]
    assert changed == [f"{encoded[0]}:{after.virtual_hosts[0].name.rsplit(':', 1)[1]}"]
