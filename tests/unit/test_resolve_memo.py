"""`resolve` with a ResolveMemo kept across revisions returns exactly what a fresh `resolve` returns.

Each revision edits a few files of a small repo (destinations, hosts, gateways, names, delegation, services,
destination rules, gateways, fleets, VirtualService documents added and removed, files added and removed);
files whose bytes did not change keep their Resource objects, as the daemon's BuildCache keeps them, so the
memo's identity-keyed paths are exercised.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config.model import ResolvedConfig
from reconciler.config.resolve import resolve
from reconciler.config.resolve_memo import ResolveMemo
from reconciler.diagnostics import Finding
from reconciler.manifests.loader import ManifestSet, load_file, load_manifests
from reconciler.manifests.model import Resource

FLEETS = """apiVersion: reconciler/v1
kind: Fleet
metadata:
  name: edge
spec:
  selector:
    app: gw
---
apiVersion: reconciler/v1
kind: Fleet
metadata:
  name: other
spec:
  selector:
    app: {other}
"""
GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw{n}
  namespace: {namespace}
spec:
  selector:
    app: gw
  servers:
  - port:
      number: {port}
      name: http
      protocol: HTTP
    hosts:
    - "{hosts}"
"""
SERVICE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc{n}
spec:
  hosts:
  - svc{n}.internal
  resolution: STATIC
  endpoints:
  - address: 10.0.0.{n}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc{n}
spec:
  host: {rule_host}
  subsets:
  - name: {subset}
"""
VIRTUAL_SERVICE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: {namespace}
spec:
  hosts:
  - {host}
  gateways:
  - {gateway}
  http:
  - match:
    - uri:
        prefix: /a
    route:
    - destination:
        host: {destination}
  - {last_rule}
"""
DELEGATE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: delegate
  namespace: {namespace}
spec:
  exportTo:
  - "{export}"
  http:
  - match:
    - uri:
        prefix: /a/b
    route:
    - destination:
        host: {destination}
"""

VS_CHOICES: dict[str, list[str]] = {
    "name": ["vs0", "vs1", "vs2", "renamed", "vs3"],
    "namespace": ["default", "team"],
    # More than one host or gateway: the list goes on in the template's indentation.
    "host": ["a.example.com", "b.example.com", "*.example.com", "short", "a.example.com\n  - vs0.example.com"],
    "gateway": ["gw0", "default/gw1", "team/gw0", "mesh", "gw0\n  - gw1", "gw1\n  - gw1"],
    "destination": ["svc0.internal", "svc1.internal", "reviews", "svc2"],
    "last_rule": [
        "route: [{destination: {host: svc1.internal}}]",
        "delegate: {name: delegate, namespace: default}",
        "mirror: {host: reviews}\n    route: [{destination: {host: svc0.internal}}]",
    ],
}


def base_repo() -> dict[str, str]:
    files = {"fleets.yaml": FLEETS.format(other="gw")}
    for n in range(2):
        files[f"gw{n}.yaml"] = GATEWAY.format(n=n, namespace="default", port=8080 + n, hosts="*")
        files[f"svc{n}.yaml"] = SERVICE.format(n=n, rule_host=f"svc{n}.internal", subset="v1")
    for i in range(3):
        files[f"vs{i}.yaml"] = VIRTUAL_SERVICE.format(
            name=f"vs{i}", namespace="default", host=f"vs{i}.example.com", gateway="gw0", destination="svc0.internal",
            last_rule=VS_CHOICES["last_rule"][0],
        )  # fmt: skip
    files["delegate.yaml"] = DELEGATE.format(namespace="default", export="*", destination="svc1.internal")
    return files


Edit = Callable[[dict[str, str]], None]


def virtual_service(i: int, changes: dict[str, int]) -> str:
    """VirtualService `i` with some fields set to one of their VS_CHOICES (the others as in base_repo)."""
    values = {"name": f"vs{i}", "namespace": "default", "host": f"vs{i}.example.com", "gateway": "gw0"}
    values |= {"destination": "svc0.internal", "last_rule": VS_CHOICES["last_rule"][0]}
    values |= {field: VS_CHOICES[field][choice % len(VS_CHOICES[field])] for field, choice in changes.items()}
    return VIRTUAL_SERVICE.format(**values)


def edit_virtual_service(i: int, changes: dict[str, int]) -> Edit:
    """File `vs<i>.yaml` holds `virtual_service(i, changes)` (a new VirtualService for i > 2)."""
    return set_file(f"vs{i}.yaml", virtual_service(i, changes))


def several_virtual_services(first: int, changes: list[dict[str, int]]) -> Edit:
    """One file, `more.yaml`, holds a VirtualService for each of `changes` (none: the file is gone)."""
    documents = [virtual_service(first + n, fields) for n, fields in enumerate(changes)]
    return set_file("more.yaml", "---\n".join(documents) if documents else None)


def set_file(path: str, text: str | None) -> Edit:
    def apply(files: dict[str, str]) -> None:
        if text is None:
            files.pop(path, None)
        else:
            files[path] = text

    return apply


def one_of_each(template: str, path: str, **choices: list[Any]) -> st.SearchStrategy[Edit]:
    """Edits that write `path` from `template`, one choice per placeholder."""
    fields = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in choices.items()})
    return fields.map(lambda values: set_file(path.format(**values), template.format(**values)))


vs_changes = st.dictionaries(st.sampled_from(list(VS_CHOICES)), st.integers(0, 5), min_size=1, max_size=2)
virtual_service_edits = st.one_of(
    st.builds(edit_virtual_service, st.integers(0, 4), vs_changes),
    st.builds(lambda i: set_file(f"vs{i}.yaml", None), st.integers(0, 4)),
    st.builds(several_virtual_services, st.integers(3, 6), st.lists(vs_changes, max_size=3)),
)
other_edits = st.one_of(
    one_of_each(
        GATEWAY,
        "gw{n}.yaml",
        n=[0, 1],
        namespace=["default", "team"],
        port=[8080, 8081],
        hosts=["*", "*.example.com", "team/*", "./a.example.com"],
    ),
    one_of_each(
        SERVICE,
        "svc{n}.yaml",
        n=[0, 1, 2],
        rule_host=["svc0.internal", "svc1.internal", "reviews"],
        subset=["v1", "v2"],
    ),
    one_of_each(
        DELEGATE,
        "delegate.yaml",
        namespace=["default", "team"],
        export=["*", ".", "team"],
        destination=["svc1.internal", "reviews"],
    ),
    # A second file of the same fleets: the later one of each name counts.
    one_of_each(FLEETS, "fleets{again}.yaml", again=["", "-again"], other=["gw", "none"]),
    st.builds(lambda i: set_file(f"vs{i}.yaml", None), st.integers(0, 4)),
    st.builds(lambda path: set_file(path, "# nothing here\n"), st.sampled_from(["vs0.yaml", "svc1.yaml"])),
)
# Most revisions change VirtualServices alone (edits, adds and removals), the case the memo patches.
revisions = st.lists(st.lists(virtual_service_edits, min_size=1, max_size=2) | st.lists(other_edits, max_size=2))


class ReusingLoader:
    """Returns the same Resource objects for a file whose bytes did not change (as the daemon's BuildCache)."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[str, bytes], tuple[list[Resource], list[Finding]]] = {}

    def __call__(self, path: str, raw: bytes, lenient: bool) -> tuple[list[Resource], list[Finding]]:
        if (path, raw) not in self.loaded:
            self.loaded[(path, raw)] = load_file(path, raw, lenient)
        return self.loaded[(path, raw)]


def load(files: dict[str, str], loader: ReusingLoader) -> ManifestSet:
    return load_manifests({path: text.encode() for path, text in files.items()}, load=loader)


def shape(value: Any) -> Any:
    """The config as nested tuples that also keep the order of every dict (equality alone would not)."""
    if isinstance(value, dict):
        return tuple((k, shape(v)) for k, v in value.items())
    if isinstance(value, tuple | list):
        return tuple(shape(v) for v in value)
    return value


def as_compared(config: ResolvedConfig) -> Any:
    return (
        shape(config.fleets),
        shape(config.services),
        shape(config.destination_rules),
        shape(config.virtual_services),
        config.findings,
    )


@settings(max_examples=200, deadline=None)
@given(revisions.filter(bool))
def test_a_memoized_resolve_equals_a_fresh_one(history: list[list[Edit]]) -> None:
    files = base_repo()
    loader, memo = ReusingLoader(), ResolveMemo()
    resolve(load(files, loader), memo=memo)
    for revision in history:
        for edit in revision:
            edit(files)
        manifests = load(files, loader)
        assert as_compared(resolve(manifests, memo=memo)) == as_compared(resolve(manifests))


def test_a_destination_change_patches_the_previous_result() -> None:
    files = base_repo()
    loader, memo = ReusingLoader(), ResolveMemo()
    before = resolve(load(files, loader), memo=memo)
    edit_virtual_service(1, {"destination": 3})(files)  # `svc2`, a short name: qualified on the way in
    after = resolve(load(files, loader), memo=memo)
    assert after.fleets["edge"].servers[1] is before.fleets["edge"].servers[1]  # not bound to vs1: kept as is
    changed = next(vs for vs in after.virtual_services if vs.resource.name == "vs1")
    assert changed.spec.http[0].route[0].destination.host == "svc2.default.svc.cluster.local"
    assert as_compared(after) == as_compared(resolve(load(files, ReusingLoader())))


def test_a_virtual_service_moved_to_another_namespace_is_bound_again() -> None:
    files = base_repo()
    set_file("gw1.yaml", GATEWAY.format(n=1, namespace="default", port=8081, hosts="team/*"))(files)
    edit_virtual_service(0, {"gateway": 1})(files)  # default/gw1, whose hosts only namespace `team` sees
    loader, memo = ReusingLoader(), ResolveMemo()
    assert resolve(load(files, loader), memo=memo).fleets["edge"].servers[1].virtual_hosts == ()
    edit_virtual_service(0, {"gateway": 1, "namespace": 1})(files)
    moved = resolve(load(files, loader), memo=memo)
    assert [host for host, _ in moved.fleets["edge"].servers[1].virtual_hosts] == ["vs0.example.com"]
    assert as_compared(moved) == as_compared(resolve(load(files, ReusingLoader())))


def test_destinations_already_qualified_are_shared_with_the_document() -> None:
    config = resolve(load(base_repo(), ReusingLoader()))
    vs0 = next(vs for vs in config.virtual_services if vs.resource.name == "vs0")
    assert vs0.spec is vs0.resource.spec


def test_an_added_and_a_removed_virtual_service_are_patched_in_and_the_rest_kept() -> None:
    files = base_repo()
    set_file("fleets.yaml", FLEETS.format(other="none"))(files)  # fleet `other` selects no gateway
    loader, memo = ReusingLoader(), ResolveMemo()
    before = resolve(load(files, loader), memo=memo)
    edit_virtual_service(3, {"host": 1})(files)  # a new VS, vs3, on b.example.com through gw0
    added = resolve(load(files, loader), memo=memo)
    assert added.fleets["other"] is before.fleets["other"]
    assert added.fleets["edge"].servers[1] is before.fleets["edge"].servers[1]  # gw1's: vs3 is not bound to it
    hosts_before, hosts = before.fleets["edge"].servers[0].virtual_hosts, added.fleets["edge"].servers[0].virtual_hosts
    assert [host for host, _ in hosts] == ["b.example.com", "vs0.example.com", "vs1.example.com", "vs2.example.com"]
    assert [vs.resource.name for vs in hosts[0][1]] == ["vs3"]
    assert all(map(operator.is_, hosts[1:], hosts_before))  # a whole resolve would make every entry anew
    assert as_compared(added) == as_compared(resolve(load(files, ReusingLoader())))

    set_file("vs1.yaml", None)(files)
    removed = resolve(load(files, loader), memo=memo)
    kept = removed.fleets["edge"].servers[0].virtual_hosts
    assert [host for host, _ in kept] == ["b.example.com", "vs0.example.com", "vs2.example.com"]
    assert all(map(operator.is_, kept, (hosts[0], hosts[1], hosts[3])))
    assert [vs.resource.name for vs in removed.virtual_services] == ["delegate", "vs0", "vs2", "vs3"]
    assert as_compared(removed) == as_compared(resolve(load(files, ReusingLoader())))
