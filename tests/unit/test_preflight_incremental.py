"""Incremental preflight with the real Envoy: after an accepted snapshot, Envoy sees only what changed."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from reconciler.pipeline import Build, build
from reconciler.protowire import fields, length_delimited, payload
from reconciler.translate.routes import VIRTUAL_HOSTS
from reconciler.translate.snapshot import PUSH_ORDER, ROUTE, Snapshot, XdsResource, content_digest
from reconciler.validation import preflight_delta
from reconciler.validation.preflight import Preflight, PreflightOptions
from reconciler.validation.preflight_delta import DomainIndex, changed_virtual_hosts
from reconciler.validation.preflight_live import LiveEnvoy
from reconciler.validation.static_config import HCM_TYPE
from tests.unit.manifest_helpers import (
    FLEET,
    SERVICE,
    TO_APP,
    destination_rule,
    documents,
    gateway,
    http_server,
    virtual_service,
)

SPARE_SERVICE = SERVICE.replace("name: app", "name: spare").replace("app.internal", "spare.internal")
GATEWAY = gateway(http_server(8080), http_server(8081).replace("name: http", "name: http-2"))


def vs_with_header(name: str, value: str, host: str | None = None) -> str:
    """VirtualService `name` (host `host`, default <name>.example.com): rule `headers` sets x-a to `value`, then
    a catch-all."""
    headers = f'headers: {{request: {{set: {{x-a: "{value}"}}}}}}'
    rule = f"{{name: headers, match: [{{uri: {{prefix: /h}}}}], {headers}, {TO_APP}}}"
    return virtual_service(name, host or f"{name}.example.com", rule, f"{{name: plain, {TO_APP}}}")


def built(*docs: str, gateway_doc: str = GATEWAY, service: str = SERVICE) -> Build:
    result = build({"gateway.yaml": documents(FLEET, gateway_doc, service, *docs).encode()})
    assert result.ok, [str(f) for f in result.findings]
    return result


BASE = (vs_with_header("a", "one"), vs_with_header("b", "one"))


class RecordingPreflight(Preflight):
    """Keeps every bootstrap it hands to Envoy."""

    def __init__(self, options: PreflightOptions | None = None) -> None:
        super().__init__(options)
        self.bootstraps: list[dict[str, Any]] = []

    def run_envoy(self, bootstrap: Any) -> str | None:
        self.bootstraps.append(bootstrap)
        return super().run_envoy(bootstrap)

    def accept(self, result: Build | Snapshot) -> None:
        """Check `result` (it must pass) and forget the bootstraps of that check."""
        if isinstance(result, Snapshot):
            assert self.failures("edge", result) == ()
        else:
            assert self.check(result) == []
        self.bootstraps.clear()


def listener_names(bootstrap: dict[str, Any]) -> list[str]:
    return sorted(listener["name"] for listener in bootstrap["static_resources"]["listeners"])


def cluster_names(bootstrap: dict[str, Any]) -> list[str]:
    return sorted(cluster["name"] for cluster in bootstrap["static_resources"]["clusters"])


def inline_route_configs(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    def walk(value: Any) -> Iterator[dict[str, Any]]:
        if isinstance(value, dict):
            yield value
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    found = (node["route_config"] for node in walk(bootstrap) if node.get("@type") == HCM_TYPE)
    return {config["name"]: config for config in found}


def routed_hosts(bootstrap: dict[str, Any]) -> dict[str, list[str]]:
    """Route config name → the domains of its virtual hosts that carry routes (the rest are stubs)."""
    return {
        name: [
            domain for vhost in config.get("virtual_hosts", []) if vhost.get("routes") for domain in vhost["domains"]
        ]
        for name, config in inline_route_configs(bootstrap).items()
    }


def test_without_a_baseline_the_whole_snapshot_is_checked() -> None:
    with RecordingPreflight() as checker:
        assert checker.check(built(*BASE)) == []
    (whole,) = checker.bootstraps
    assert listener_names(whole) == ["0.0.0.0_8080", "0.0.0.0_8081"]
    assert cluster_names(whole) == ["outbound|80||app.internal"]
    assert routed_hosts(whole) == {name: ["a.example.com", "b.example.com"] for name in ("http.8080", "http.8081")}


def test_a_valid_change_is_checked_alone() -> None:
    with RecordingPreflight() as checker:
        checker.accept(built(*BASE))
        assert checker.check(built(vs_with_header("a", "one"), vs_with_header("b", "two"))) == []
    (only,) = checker.bootstraps
    assert listener_names(only) == ["0.0.0.0_8080", "0.0.0.0_8081"]  # they carry the changed route configs
    assert cluster_names(only) == []
    assert routed_hosts(only) == {name: ["b.example.com"] for name in ("http.8080", "http.8081")}
    # a.example.com is unchanged and cannot clash with b.example.com by domain: Envoy need not see it at all
    assert [vhost["name"] for vhost in inline_route_configs(only)["http.8080"]["virtual_hosts"]] == [
        "b.example.com:8080"
    ]


@pytest.mark.parametrize("baseline", ["restored", "checked whole"])
def test_a_restored_last_good_snapshot_is_the_baseline(baseline: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon hands over each fleet's last good snapshot after a restart: no whole check follows. The
    baseline's virtual hosts are indexed as it is set, so the first change parses only the changed ones."""
    parsed: list[bytes] = []
    parse = preflight_delta._lowered_domains
    monkeypatch.setattr(preflight_delta, "_lowered_domains", lambda entry: parsed.append(entry) or parse(entry))
    with RecordingPreflight() as checker:
        if baseline == "restored":
            checker.accepted_before("edge", built(*BASE).snapshots["edge"])
        else:
            checker.accept(built(*BASE))
        checker.bootstraps.clear()
        parsed.clear()
        assert checker.check(built(vs_with_header("a", "one"), vs_with_header("b", "two"))) == []
    (only,) = checker.bootstraps
    assert routed_hosts(only) == {name: ["b.example.com"] for name in ("http.8080", "http.8081")}
    assert len(parsed) == 2  # b.example.com's changed virtual host, in each of the two route configurations


def test_a_broken_route_is_traced_to_its_rule_and_the_fix_is_checked_alone() -> None:
    broken = built(vs_with_header("a", "one"), vs_with_header("b", "%NOT_A_FIELD%"))
    with RecordingPreflight() as checker:
        checker.accept(built(*BASE))
        findings = checker.check(broken)
        assert all(set(routed_hosts(b).get("http.8080", [])) <= {"b.example.com"} for b in checker.bootstraps)
        checker.bootstraps.clear()
        # The rejection left the accepted baseline in place: the fix is checked against it, not as a whole.
        assert checker.check(built(vs_with_header("a", "one"), vs_with_header("b", "fixed"))) == []
    vs = next(r for r in broken.manifests.of_kind("VirtualService") if r.name == "b")
    assert len(findings) == 2  # the rule is served on both ports
    for finding in findings:
        assert finding.code == "envoy-rejected" and "NOT_A_FIELD" in finding.message
        assert finding.location == vs.locate("spec", "http", 0)
    (fix,) = checker.bootstraps
    assert routed_hosts(fix) == {name: ["b.example.com"] for name in ("http.8080", "http.8081")}


POOL_RULE = destination_rule("app", "app.internal", "trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}")


@pytest.mark.parametrize(
    "service",
    [
        pytest.param(documents(SERVICE.replace("10.0.0.1", "10.0.0.2"), SPARE_SERVICE), id="endpoints"),
        pytest.param(documents(SERVICE, SPARE_SERVICE, POOL_RULE), id="cluster"),
    ],
)
def test_a_cluster_change_checks_that_cluster_alone(service: str) -> None:
    with RecordingPreflight() as checker:
        checker.accept(built(*BASE, service=documents(SERVICE, SPARE_SERVICE)))
        assert checker.check(built(*BASE, service=service)) == []
    (only,) = checker.bootstraps
    assert (listener_names(only), cluster_names(only)) == ([], ["outbound|80||app.internal"])
    (cluster,) = only["static_resources"]["clusters"]
    assert "10.0.0." in str(cluster["load_assignment"])  # with its endpoints


def test_nothing_to_check_runs_no_envoy() -> None:
    with RecordingPreflight() as checker:
        checker.accept(built(*BASE, service=documents(SERVICE, SPARE_SERVICE)))
        assert checker.check(built(*BASE)) == []  # only an unused cluster is gone
    assert checker.bootstraps == []


def test_a_listener_change_checks_every_listener() -> None:
    third = gateway(http_server(8082, '["c.example.com"]'), name="gw3")
    vs_on_third = virtual_service("c", "c.example.com", gateways="[gw3]")
    with RecordingPreflight() as checker:
        checker.accept(built(*BASE))
        assert checker.check(built(*BASE, vs_on_third, gateway_doc=documents(GATEWAY, third))) == []
    (only,) = checker.bootstraps
    assert listener_names(only) == ["0.0.0.0_8080", "0.0.0.0_8081", "0.0.0.0_8082"]
    assert routed_hosts(only) == {"http.8080": [], "http.8081": [], "http.8082": ["c.example.com"]}


# Hand-built snapshots for what translation never produces but Envoy must still catch across the diff.


def _listener(name: str, port: int, route_config: str) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    manager.rds.route_config_name = route_config
    manager.rds.config_source.ads.SetInParent()
    manager.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    listener = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)),
    )
    listener.filter_chains.add().filters.add(name="hcm").typed_config.Pack(manager)
    return listener


def _route_config(*domains: str) -> route_pb2.RouteConfiguration:
    hosts = [
        route_components_pb2.VirtualHost(
            name=f"vh-{i}",
            domains=[domain],
            routes=[route_components_pb2.Route(match={"prefix": "/"}, direct_response={"status": 200})],
        )
        for i, domain in enumerate(domains)
    ]
    return route_pb2.RouteConfiguration(name="rc", virtual_hosts=hosts)


def _checked_hosts(
    old: route_pb2.RouteConfiguration, new: route_pb2.RouteConfiguration
) -> list[route_components_pb2.VirtualHost]:
    body = changed_virtual_hosts(XdsResource.of(old), XdsResource.of(new)).body
    return list(route_pb2.RouteConfiguration.FromString(body).virtual_hosts)


def test_only_unchanged_virtual_hosts_that_may_clash_are_kept_as_stubs() -> None:
    old = _route_config("a.com", "b.com", "x.org")
    changed_host = _route_config("a.com", "c.com", "x.org")
    assert _checked_hosts(old, changed_host) == [changed_host.virtual_hosts[1]]
    clashing = _route_config("a.com", "X.ORG", "x.org")  # Envoy compares domains in lower case
    assert _checked_hosts(old, clashing) == [
        clashing.virtual_hosts[1],
        route_components_pb2.VirtualHost(name="vh-2", domains=["x.org"]),
    ]


def test_the_parts_a_route_config_was_joined_from_give_what_parsing_it_gives() -> None:
    old = built(*BASE).snapshots["edge"].of_type(ROUTE)["http.8080"]
    new = built(vs_with_header("a", "one"), vs_with_header("b", "two")).snapshots["edge"].of_type(ROUTE)["http.8080"]
    assert old.parts and new.parts  # translation joined them from their virtual hosts
    parsed = changed_virtual_hosts(replace(old, parts=()), replace(new, parts=()))
    assert changed_virtual_hosts(old, new) == parsed
    assert changed_virtual_hosts(old, replace(new, parts=())) == parsed  # e.g. a baseline restored from disk
    hosts = route_pb2.RouteConfiguration.FromString(parsed.body).virtual_hosts
    assert [v.name for v in hosts] == ["b.example.com:8080"]


def test_changed_route_config_fields_keep_the_whole_route_config() -> None:
    old = XdsResource.of(_route_config("a.com", "b.com"))
    changed_host = _route_config("a.com", "c.com")
    changed_host.max_direct_response_body_size_bytes.value = 10
    assert changed_virtual_hosts(old, XdsResource.of(changed_host)) == XdsResource.of(changed_host)


def test_malformed_wire_data_is_an_error_not_a_wrong_answer() -> None:
    with pytest.raises(ValueError, match="past the end"):
        fields(b"\x0a\x05ab")  # field 1 announces 5 bytes, has 2
    with pytest.raises(ValueError, match="truncated varint"):
        fields(b"\x08\x80")


def test_a_domain_clash_with_an_unchanged_virtual_host_is_caught() -> None:
    listener = _listener("main", 1, "rc")
    with RecordingPreflight() as checker:
        checker.accept(Snapshot.build([listener, _route_config("a.com", "b.com")]))
        (failure,) = checker.failures("edge", Snapshot.build([listener, _route_config("a.com", "A.COM")]))
    assert (failure.kind, failure.name) == ("listener", "main")
    assert "Duplicate entry of domain a.com" in failure.message


def test_a_new_listener_clashing_with_an_unchanged_one_is_caught() -> None:
    first, config = _listener("first", 1, "rc"), _route_config("a.com")
    with RecordingPreflight() as checker:
        checker.accept(Snapshot.build([first, config]))
        failures = checker.failures("edge", Snapshot.build([first, _listener("second", 1, "rc"), config]))
    (failure,) = failures  # each listener alone is fine: the fleet as a whole is rejected
    assert failure.kind == "fleet" and "duplicate address" in failure.message
    assert listener_names(checker.bootstraps[0]) == ["first", "second"]


def test_a_route_to_a_cluster_outside_the_check_is_no_error_as_over_rds() -> None:
    config = route_pb2.RouteConfiguration(name="rc")  # validate_clusters unset: over RDS it means false
    config.virtual_hosts.add(name="vh", domains=["a.com"]).routes.add(match={"prefix": "/"}, route={"cluster": "x"})
    with RecordingPreflight() as checker:
        assert checker.failures("edge", Snapshot.build([_listener("main", 1, "rc"), config])) == ()


# -- the live Envoy (preflight_live): route-only changes checked by a long-running Envoy ----------------------


@pytest.fixture
def live_checker() -> Iterator[RecordingPreflight]:
    with RecordingPreflight(PreflightOptions(live=True)) as checker:
        checker.accept(built(*BASE))  # no baseline yet: a whole check by `envoy --mode validate`
        yield checker
    assert checker.live_pid() is None  # closing the preflight stopped its Envoy


def test_the_live_envoy_starts_as_soon_as_a_fleet_has_a_baseline(live_checker: RecordingPreflight) -> None:
    deadline = time.monotonic() + 20
    while live_checker.live_pid() is None and time.monotonic() < deadline:  # started in the background
        time.sleep(0.05)
    pid = live_checker.live_pid()
    assert pid is not None and _running(pid)


def test_a_route_change_is_accepted_by_the_live_envoy_without_a_validate_run(
    live_checker: RecordingPreflight,
) -> None:
    for value in ("two", "three"):
        assert live_checker.check(built(vs_with_header("a", "one"), vs_with_header("b", value))) == []
    assert live_checker.bootstraps == []
    pid = live_checker.live_pid()
    assert pid is not None and _running(pid)


def test_a_route_the_live_envoy_refuses_is_narrowed_by_validate_runs(live_checker: RecordingPreflight) -> None:
    broken = built(vs_with_header("a", "one"), vs_with_header("b", "%NOT_A_FIELD%"))
    findings = live_checker.check(broken)
    vs = next(r for r in broken.manifests.of_kind("VirtualService") if r.name == "b")
    assert [f.location for f in findings] == [vs.locate("spec", "http", 0)] * 2
    assert all(f.code == "envoy-rejected" and "NOT_A_FIELD" in f.message for f in findings)
    assert live_checker.bootstraps  # the refusal was traced by `envoy --mode validate`
    live_checker.bootstraps.clear()
    assert live_checker.check(built(vs_with_header("a", "one"), vs_with_header("b", "fixed"))) == []
    assert live_checker.bootstraps == []  # and the live Envoy took the fix after its refusal


def test_a_cluster_change_is_not_for_the_live_envoy(live_checker: RecordingPreflight) -> None:
    assert live_checker.check(built(*BASE, service=documents(SERVICE, POOL_RULE))) == []
    assert cluster_names(live_checker.bootstraps[0]) == ["outbound|80||app.internal"]


def test_a_dead_live_envoy_is_started_again(live_checker: RecordingPreflight) -> None:
    assert live_checker.check(built(vs_with_header("a", "one"), vs_with_header("b", "two"))) == []
    first = live_checker.live_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert live_checker.check(built(vs_with_header("a", "one"), vs_with_header("b", "three"))) == []
    assert live_checker.live_pid() not in (None, first)
    assert live_checker.bootstraps == []


def test_an_envoy_that_cannot_start_is_no_verdict(tmp_path: Path) -> None:
    live = LiveEnvoy(shutil.which("false") or "/bin/false", tmp_path)
    started = time.monotonic()
    assert live.accepts(built(*BASE).snapshots["edge"]) is False  # the caller then runs `envoy --mode validate`
    assert time.monotonic() - started < 5 and live.pid is None
    live.close()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_domain_index_kept_between_checks_gives_what_a_fresh_one_gives() -> None:
    lower = DomainIndex()
    old = XdsResource.of(_route_config("a.com", "b.com", "x.org"))
    for new in (_route_config("a.com", "c.com", "x.org"), _route_config("a.com", "X.ORG", "x.org")):
        subject = XdsResource.of(new)
        assert changed_virtual_hosts(old, subject, lower) == changed_virtual_hosts(old, subject)
    renamed = XdsResource.of(_route_config("A.com", "b.com", "x.org"))  # clashes with nothing left: no stubs
    assert changed_virtual_hosts(old, renamed, lower).body == XdsResource.of(_route_config("A.com")).body


# -- the domain index kept between checks: successive changes, against a brute-force reference and Envoy -------


def _with_domain(snapshot: Snapshot, host: str, domain: str) -> Snapshot:
    """`snapshot` with `domain` added to the virtual hosts of `host`, every other entry of the route configs kept
    as the very same object, as translation keeps an unchanged virtual host. Translation lower-cases and merges
    the hosts of VirtualServices, so it never makes a clash itself: this is the clash a translation bug would
    make, which the preflight must still show Envoy."""

    def entry(old: bytes) -> bytes:
        vhost = route_components_pb2.VirtualHost.FromString(payload(old))
        if not vhost.name.startswith(f"{host}:"):
            return old
        vhost.domains.append(domain)
        return length_delimited(VIRTUAL_HOSTS, vhost.SerializeToString(deterministic=True))

    routes = []
    for config in snapshot.of_type(ROUTE).values():
        head, *entries, tail = config.parts
        parts = (head, *map(entry, entries), tail)
        body = b"".join(parts)
        routes.append(XdsResource(config.type_url, config.name, body, content_digest(body), parts))
    others = [resource for t in PUSH_ORDER if t != ROUTE for resource in snapshot.of_type(t).values()]
    return Snapshot.of_resources([*others, *routes])


def test_a_changed_host_clashing_in_another_case_with_an_unchanged_one_is_rejected_after_successive_changes() -> None:
    """The index of each route config follows an added, a removed and a renamed VirtualService host, each change
    checked alone; a change that then clashes, in another case, with a host the index got from those changes is
    Envoy's rejection, and a domain that left the route config clashes with nothing."""
    b_renamed = vs_with_header("b", "one", host="d.example.com")
    with RecordingPreflight() as checker:
        checker.accept(built(*BASE))
        for docs, routed in [
            ((*BASE, vs_with_header("c", "one")), ["c.example.com"]),  # a host added
            ((vs_with_header("b", "one"), vs_with_header("c", "one")), []),  # a host removed
            ((b_renamed, vs_with_header("c", "one")), ["d.example.com"]),  # a domain renamed
        ]:
            assert checker.check(built(*docs)) == []
            (only,) = checker.bootstraps
            assert routed_hosts(only) == {name: routed for name in ("http.8080", "http.8081")}
            checker.bootstraps.clear()
        changed = built(b_renamed, vs_with_header("c", "two")).snapshots["edge"]
        failures = checker.failures("edge", _with_domain(changed, "c.example.com", "D.Example.COM"))
        assert sorted((f.kind, f.name) for f in failures) == [
            ("listener", "0.0.0.0_8080"),
            ("listener", "0.0.0.0_8081"),
        ]
        assert all("Duplicate entry of domain d.example.com" in f.message for f in failures)
        first = inline_route_configs(checker.bootstraps[0])["http.8080"]["virtual_hosts"]
        assert [(v["name"], "routes" in v) for v in first] == [
            ("c.example.com:8080", True),
            ("d.example.com:8080", False),
        ]
        checker.bootstraps.clear()
        for gone in ("A.Example.COM", "B.Example.COM"):  # removed, renamed away: the index forgot them
            assert checker.failures("edge", _with_domain(changed, "c.example.com", gone)) == ()
            (only,) = checker.bootstraps
            hosts = inline_route_configs(only)["http.8080"]["virtual_hosts"]
            assert [v["name"] for v in hosts] == ["c.example.com:8080"]
            checker.bootstraps.clear()


DOMAIN_CHOICES = ["a.com", "A.com", "b.org", "B.ORG", "*", "*.a.com", "*.A.COM", "shop.*", "c.net", "x.a.com"]


class _RouteConfigModel:
    """A route config of virtual hosts as translation hands it over: an unchanged host keeps its entry object."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.hosts: dict[str, tuple[tuple[str, ...], str, bytes]] = {}  # name → (domains, route prefix, entry)
        self.serial = 0

    def put(self, name: str, domains: tuple[str, ...], prefix: str) -> None:
        self.hosts[name] = (domains, prefix, _entry(name, domains, prefix))

    def change(self) -> None:
        """Adds, removes, renames a domain of or re-routes a virtual host (or leaves them all as they are)."""
        rng, names = self.rng, sorted(self.hosts)
        what = rng.choice(["add", "add", "remove", "rename", "reroute", "none"] if names else ["add"])
        if what == "add":
            self.serial += 1
            self.put(f"vh-{self.serial}", tuple(rng.sample(DOMAIN_CHOICES, rng.randint(1, 2))), "/")
        elif what == "remove":
            del self.hosts[rng.choice(names)]
        elif what in ("rename", "reroute"):
            name = rng.choice(names)
            domains, prefix, _ = self.hosts[name]
            if what == "rename":
                domains = (*domains[:-1], rng.choice(DOMAIN_CHOICES))
            self.put(name, domains, prefix + "x" if what == "reroute" else prefix)

    def resource(self) -> XdsResource:
        resource = _joined([entry for *_, entry in self.hosts.values()])
        return resource if self.rng.random() < 0.8 else replace(resource, parts=())  # e.g. restored from disk


def _entry(name: str, domains: tuple[str, ...], prefix: str = "/") -> bytes:
    """A virtual host's entry in a route config (field, length, message), as translation makes it."""
    vhost = route_components_pb2.VirtualHost(name=name, domains=domains)
    vhost.routes.add(match={"prefix": prefix}, direct_response={"status": 200})
    return length_delimited(VIRTUAL_HOSTS, vhost.SerializeToString())


def _joined(entries: list[bytes]) -> XdsResource:
    """Route config `rc` joined from the entries of its virtual hosts, as translation joins it."""
    parts = (route_pb2.RouteConfiguration(name="rc").SerializeToString(), *entries, b"")
    body = b"".join(parts)
    return XdsResource(ROUTE, "rc", body, content_digest(body), parts)


def _what_envoy_must_see(old: XdsResource, new: XdsResource) -> list[route_components_pb2.VirtualHost]:
    """By brute force: the virtual hosts of `new` that `old` lacks, and a stub of each other one having a
    domain equal in ASCII lower case (Envoy's comparison) to one of theirs, in order."""
    old_hosts = {v.SerializeToString() for v in route_pb2.RouteConfiguration.FromString(old.body).virtual_hosts}
    hosts = route_pb2.RouteConfiguration.FromString(new.body).virtual_hosts
    fresh = [v for v in hosts if v.SerializeToString() not in old_hosts]
    changed = {domain.encode().lower() for v in fresh for domain in v.domains}
    return [
        v if v in fresh else route_components_pb2.VirtualHost(name=v.name, domains=v.domains)
        for v in hosts
        if v in fresh or changed & {domain.encode().lower() for domain in v.domains}
    ]


@pytest.mark.parametrize("seed", range(4))
def test_a_domain_index_kept_across_many_changes_stubs_exactly_the_hosts_that_may_clash(seed: int) -> None:
    """Random successive changes, a baseline that stays when a check is rejected, route configs with and without
    their parts: the index kept between checks gives what brute force gives, every time."""
    rng = random.Random(seed)
    model, index = _RouteConfigModel(rng), DomainIndex()
    for _ in range(3):
        model.change()
    baseline = model.resource()
    for _ in range(60):
        model.change()
        new = model.resource()
        checked = route_pb2.RouteConfiguration.FromString(changed_virtual_hosts(baseline, new, index).body)
        assert list(checked.virtual_hosts) == _what_envoy_must_see(baseline, new)
        if rng.random() < 0.7:  # accepted: the next check's baseline
            baseline = new


def test_one_entry_object_twice_is_checked_whole() -> None:
    entry = _entry("vh", ("a.com",))
    new = _joined([entry, entry])
    assert changed_virtual_hosts(_joined([entry]), new, DomainIndex()) is new  # Envoy must see both
