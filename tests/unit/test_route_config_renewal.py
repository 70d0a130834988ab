"""Route configurations renewed host by host when VirtualServices come and go or change their hosts: only the
hosts that changed are built, and the result is exactly what translating the revision from scratch gives.

Each revision's config is made as `config.resolve_memo` hands it over: a fresh resolve of the revision, with the
very same objects as the revision before wherever they resolve alike (gateways, services, every untouched
(host, VirtualServices) entry of a server). That the configs so made are the revisions' own is checked against a
whole build of each revision."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.synthetic import RepoShape, generate
from reconciler.config.model import (
    BoundServer,
    FleetConfig,
    ResolvedConfig,
    ResolvedGateway,
    ResolvedVirtualService,
)
from reconciler.config.resolve import resolve
from reconciler.manifests.load_memo import LoadMemo
from reconciler.pipeline import build
from reconciler.pipeline_cache import BuildCache
from reconciler.translate import Translation, route_configs, translate_fleet
from tests.unit.test_incremental_build import Files, hosts_that_come_and_go, record_assembled, record_built_hosts

GOLDEN = Path(__file__).parent.parent / "golden" / "cases"
Entry = tuple[str, tuple[ResolvedVirtualService, ...]]


class Revisions:
    """Revisions translated through one BuildCache, their configs reusing the objects of the revision before."""

    def __init__(self) -> None:
        self.files = LoadMemo()
        self.config: ResolvedConfig | None = None
        self.cache = BuildCache()

    def renew(self, files: Files) -> dict[str, Translation]:
        """Every fleet's translation of `files` through the cache."""
        fresh = resolve(self.files.load(files, lenient=False))
        config = self.config = fresh if self.config is None else _reusing(self.config, fresh)
        self.cache.start_build()
        return {fleet: translate_fleet(config, fleet, memos=self.cache.translate_memos) for fleet in config.fleets}

    def check(self, files: Files, renewed: dict[str, Translation]) -> None:
        """`renewed` (of `files`, the latest revision) is the translation without a cache, and the whole build's."""
        assert self.config is not None
        whole = build(files)
        for fleet, translation in renewed.items():
            uncached = translate_fleet(self.config, fleet)
            assert translation.findings == uncached.findings
            assert translation.snapshot == uncached.snapshot
            assert dict(translation.snapshot.type_versions) == dict(uncached.snapshot.type_versions)
            if fleet in whole.snapshots:
                assert translation.snapshot == whole.snapshots[fleet]

    def translate(self, files: Files) -> dict[str, Translation]:
        renewed = self.renew(files)
        self.check(files, renewed)
        return renewed


def _reusing(before: ResolvedConfig, fresh: ResolvedConfig) -> ResolvedConfig:
    """`fresh` with `before`'s objects wherever they are alike, as a memoized resolve hands them back."""
    bound_before = _alike({id(vs.resource): vs for f in before.fleets.values() for vs in _attached(f.servers)})
    listed_before = _alike({id(vs.resource): vs for vs in before.virtual_services})  # delegates unmerged
    servers = {(id(b.gateway.resource), b.index): b for fleet in before.fleets.values() for b in fleet.servers}
    gateways = {id(g.resource): g for fleet in before.fleets.values() for g in fleet.gateways}

    def same_gateway(gateway: ResolvedGateway) -> ResolvedGateway:
        return gateways.get(id(gateway.resource), gateway)

    def same_server(bound: BoundServer) -> BoundServer:
        earlier = servers.get((id(bound.gateway.resource), bound.index))
        entries = {(e[0], tuple(map(id, e[1]))): e for e in earlier.virtual_hosts} if earlier else {}
        renewed = []
        for host, attached in bound.virtual_hosts:
            same = tuple(map(bound_before, attached))
            renewed.append(entries.get((host, tuple(map(id, same))), (host, same)))
        if earlier is not None and _same_objects(renewed, earlier.virtual_hosts):
            return earlier
        return BoundServer(same_gateway(bound.gateway), bound.server, bound.index, tuple(renewed))

    fleets = {
        name: FleetConfig(
            name, fleet.resource, tuple(map(same_gateway, fleet.gateways)), tuple(map(same_server, fleet.servers))
        )
        for name, fleet in fresh.fleets.items()
    }
    services = before.services if before.services == fresh.services else fresh.services
    rules = before.destination_rules if before.destination_rules == fresh.destination_rules else fresh.destination_rules
    return ResolvedConfig(fleets, services, rules, tuple(map(listed_before, fresh.virtual_services)), fresh.findings)


def _alike(
    earlier: dict[int, ResolvedVirtualService],
) -> Callable[[ResolvedVirtualService], ResolvedVirtualService]:
    """A VirtualService as `earlier` (by resource) holds it when it resolved alike, else as it is."""

    def alike(vs: ResolvedVirtualService) -> ResolvedVirtualService:
        before = earlier.get(id(vs.resource))
        return before if before == vs else vs

    return alike


def _attached(servers: tuple[BoundServer, ...]) -> Iterator[ResolvedVirtualService]:
    return (vs for bound in servers for _, attached in bound.virtual_hosts for vs in attached)


def _same_objects(items: list[Entry], earlier: tuple[Entry, ...]) -> bool:
    return len(items) == len(earlier) and all(a is b for a, b in zip(items, earlier, strict=True))


@pytest.fixture
def renewals(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each renewal of a route configuration by its hosts: whether a server gained or lost a host."""
    regrouped: list[bool] = []
    changes = route_configs._host_changes

    def recording(*args: Any) -> tuple[list[str], bool] | None:
        found = changes(*args)
        if found is not None and found[0]:
            regrouped.append(found[1])
        return found

    monkeypatch.setattr(route_configs, "_host_changes", recording)
    return regrouped


def test_virtual_services_and_hosts_that_come_and_go_renew_only_those_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """As tests/unit/test_incremental_build.py checks through `build`, with configs made here."""
    files, revisions = hosts_that_come_and_go(generate(RepoShape(40, fleets=1, gateways_per_fleet=2)))
    translations = Revisions()
    translations.translate(files)
    assembled, built = record_assembled(monkeypatch), record_built_hosts(monkeypatch)
    for revision, hosts in revisions:
        assembled.clear()
        built.clear()
        renewed = translations.renew(revision)
        assert sorted(built) == sorted(hosts) and len(assembled) == 1, (built, assembled)
        translations.check(revision, renewed)


REDIRECTS = """
apiVersion: reconciler/v1
kind: Fleet
metadata: {name: edge}
spec: {selector: {app: edge}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: secure, namespace: edge}
spec:
  selector: {app: edge}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: plain, namespace: edge}
spec:
  selector: {app: edge}
  servers:
  - port: {number: 80, name: http-plain, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: edge}
spec:
  hosts: [app.internal]
  ports: [{number: 8000, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: edge}
spec:
  hosts: [shop.example.com, blog.example.com]
  gateways: [plain]
  http: [{route: [{destination: {host: app.internal}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: blog, namespace: edge}
spec:
  hosts: [blog.example.com]
  gateways: [secure]
  http: [{route: [{destination: {host: app.internal}}]}]
"""


def _documents(text: str) -> dict[str, bytes]:
    return {f"{i}.yaml": document.encode() for i, document in enumerate(text.strip().split("\n---\n"))}


def _edited(files: Files, path: str, edit: Callable[[dict[str, Any]], None]) -> dict[str, bytes]:
    manifest = yaml.safe_load(files[path])
    edit(manifest)
    return {**files, path: yaml.safe_dump(manifest).encode()}


def _add_host(host: str) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest["spec"]["hosts"].append(host)


def _rename(manifest: dict[str, Any]) -> None:
    manifest["metadata"]["name"] += "-copy"


def test_redirected_hosts_and_their_warnings_follow_the_servers_hosts(renewals: list[bool]) -> None:
    """A host the redirecting server gains is redirected on the port, and the plain server's routes for it are
    warned about; no longer once it is gone."""
    files = _documents(REDIRECTS)
    blog = next(path for path, text in files.items() if b"name: blog," in text)
    revisions = Revisions()
    assert _warned_hosts(revisions.translate(files)) == ["blog.example.com"]
    secure_shop = _edited(files, blog, _add_host("shop.example.com"))
    assert _warned_hosts(revisions.translate(secure_shop)) == ["blog.example.com", "shop.example.com"]
    assert _warned_hosts(revisions.translate(files)) == ["blog.example.com"]
    assert _warned_hosts(revisions.translate({p: b for p, b in files.items() if p != blog})) == []
    assert _warned_hosts(revisions.translate(files)) == ["blog.example.com"]
    assert renewals == [True] * 4


def _warned_hosts(translations: dict[str, Translation]) -> list[str]:
    findings = translations["edge"].findings
    assert all(f.code == "https-redirect-shared-host" for f in findings)
    return [host for f in findings for host in yaml.safe_load(f.message.split(" on port")[0].removeprefix("hosts "))]


def test_every_golden_case_with_virtual_services_added_removed_and_given_hosts(renewals: list[bool]) -> None:
    """Each VirtualService of every golden case removed, put back, copied under another name and given another
    host, in turn: through delegates, TLS servers, several servers on a port, wildcard and namespaced hosts."""
    for case in sorted(GOLDEN.glob("*/manifests.yaml")):
        files = _documents(case.read_text())
        revisions = Revisions()
        revisions.translate(files)
        for path, text in files.items():
            manifest = yaml.safe_load(text)
            if manifest.get("kind") != "VirtualService":
                continue
            edits: list[Files] = [
                {p: b for p, b in files.items() if p != path},
                _edited({**files, f"copy-{path}": text}, f"copy-{path}", _rename),
            ]
            if manifest["spec"].get("hosts"):
                edits.append(_edited(files, path, _add_host("added.example.com")))
            for edited in edits:
                revisions.translate(edited)
                revisions.translate(files)
    assert renewals.count(True) > 30  # hosts came and went on the renewal path, not only in whole builds
