"""Synthetic config repos for the benchmarks: N VirtualServices of 10 routes each, several fleets and gateways.

The repo is first described as plain data (`SyntheticRepo`: fleets, gateways, services, virtual services and
their rules), then rendered to manifest files. The benchmarks feed the files to the real pipeline, and the
protobuf floor (`bench/floor.py`) builds the same Envoy resources straight from the plain data, so the two
always describe one repo.

Shape (per `RepoShape`): `fleets` fleets, each selecting `gateways_per_fleet` Gateways (one HTTP port each);
VirtualService i lives in namespace `team-<i % namespaces>`, serves host `vs-<i>.example.test`, binds one
gateway (every tenth VS binds a gateway of each fleet), and has ten rules mixing prefix, exact and regex
paths, header, method and query matches, weighted splits over DestinationRule subsets, timeouts, retries,
rewrites and a final catch-all. One ServiceEntry (STATIC, two endpoints: version v1 and v2) and one
DestinationRule (subsets v1, v2; every fourth with a connection pool) per `vs_per_service` VirtualServices.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

ISTIO_API = "networking.istio.io/v1"
FLEET_API = "reconciler/v1"
SERVICE_NAMESPACE = "services"
SERVICE_DOMAIN = "bench.internal"
VS_DOMAIN = "example.test"
SUBSETS = ("v1", "v2")
CANARY_HEADER = "x-canary"
# Rule 0 of every VirtualService: a plain prefix route to one service, the one `change_destination` moves.
PROBE_PREFIX = "/probe/"

try:  # libyaml's emitter is ~10x faster; 10k files matter here
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]


@dataclass(frozen=True)
class RepoShape:
    virtual_services: int
    routes_per_vs: int = 10
    fleets: int = 2
    gateways_per_fleet: int = 2
    namespaces: int = 10
    vs_per_service: int = 10
    # Where every STATIC endpoint points (service k uses upstreams[k % len]); the default is the discard port.
    upstreams: tuple[tuple[str, int], ...] = (("127.0.0.1", 9),)
    first_port: int = 8080  # gateway g of each fleet listens on first_port + g
    waves: tuple[str, ...] = ("100%",)
    bake: str = "0s"

    @property
    def services(self) -> int:
        # Even, so the next service of any service sits on the other upstream when there are two of them.
        count = max(4, self.virtual_services // self.vs_per_service)
        return count + count % 2


@dataclass(frozen=True)
class Fleet:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Gateway:
    name: str
    namespace: str
    fleet: str
    port: int
    selector: Mapping[str, str]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Service:
    index: int
    host: str
    port: int
    endpoints: tuple[tuple[str, int, str], ...]  # (address, port, version label)
    connection_pool: bool

    @property
    def name(self) -> str:
        return f"svc-{self.index}"


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str = ""
    weight: int = 0


@dataclass(frozen=True)
class Match:
    path_kind: str  # prefix | exact | regex
    path: str
    headers: tuple[tuple[str, str, str], ...] = ()  # (name, kind, value)
    method: str = ""
    query: tuple[tuple[str, str, str], ...] = ()
    ignore_case: bool = False


@dataclass(frozen=True)
class Retry:
    attempts: int
    per_try_timeout: str
    retry_on: str


@dataclass(frozen=True)
class Rule:
    name: str
    match: Match | None  # None: the catch-all
    destinations: tuple[Destination, ...]
    timeout: str = ""
    retries: Retry | None = None
    rewrite_uri: str = ""


@dataclass(frozen=True)
class VirtualService:
    index: int
    namespace: str
    host: str
    gateways: tuple[str, ...]  # gateway refs (namespace/name)
    rules: tuple[Rule, ...]

    @property
    def name(self) -> str:
        return f"vs-{self.index}"

    @property
    def path(self) -> str:
        return f"routes/{self.namespace}/{self.name}.yaml"


@dataclass(frozen=True)
class SyntheticRepo:
    shape: RepoShape
    fleets: tuple[Fleet, ...]
    gateways: tuple[Gateway, ...]
    services: tuple[Service, ...]
    virtual_services: tuple[VirtualService, ...]
    _files: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def files(self) -> dict[str, bytes]:
        """The manifest files (path → bytes), as a config repo would hold them; rendered once."""
        if not self._files:
            self._files.update(render_files(self))
        return dict(self._files)

    def gateway(self, ref: str) -> Gateway:
        return next(g for g in self.gateways if g.ref == ref)

    def route_count(self) -> int:
        return sum(len(vs.rules) for vs in self.virtual_services)

    def with_virtual_service(self, vs: VirtualService) -> SyntheticRepo:
        """This repo with one VirtualService replaced (the files are re-rendered for that VS only)."""
        others = tuple(vs if v.index == vs.index else v for v in self.virtual_services)
        changed = replace(self, virtual_services=others, _files={})
        if self._files:
            changed._files.update(self._files)
            changed._files[vs.path] = dump([virtual_service_manifest(vs)])
        return changed


# ---------------------------------------------------------------------------------------------- generation


def generate(shape: RepoShape) -> SyntheticRepo:
    fleets = tuple(Fleet(f"edge-{f}", {"app": f"edge-{f}", "tier": "edge"}) for f in range(shape.fleets))
    gateways = tuple(
        Gateway(f"gw-{f}-{g}", f"gw-{f}", fleet.name, shape.first_port + g, {"app": fleet.labels["app"]})
        for f, fleet in enumerate(fleets)
        for g in range(shape.gateways_per_fleet)
    )
    services = tuple(_service(k, shape) for k in range(shape.services))
    virtual_services = tuple(_virtual_service(i, shape, gateways, services) for i in range(shape.virtual_services))
    return SyntheticRepo(shape, fleets, gateways, services, virtual_services)


def _service(k: int, shape: RepoShape) -> Service:
    address, port = shape.upstreams[k % len(shape.upstreams)]
    return Service(
        k,
        f"svc-{k}.{SERVICE_DOMAIN}",
        80,
        tuple((address, port, version) for version in SUBSETS),
        connection_pool=k % 4 == 0,
    )


def _virtual_service(
    i: int, shape: RepoShape, gateways: tuple[Gateway, ...], services: tuple[Service, ...]
) -> VirtualService:
    per_fleet = shape.gateways_per_fleet
    home = gateways[i % len(gateways)]
    bound = [home.ref]
    if i % 10 == 0 and shape.fleets > 1:  # shared hosts: served by a gateway of every fleet
        bound = [gateways[f * per_fleet + i % per_fleet].ref for f in range(shape.fleets)]
    rules = tuple(_rule(i, j, services) for j in range(shape.routes_per_vs - 1))
    catch_all = Rule("default", None, (Destination(services[i % len(services)].host),))
    return VirtualService(i, f"team-{i % shape.namespaces}", f"vs-{i}.{VS_DOMAIN}", tuple(bound), (*rules, catch_all))


def _rule(i: int, j: int, services: tuple[Service, ...]) -> Rule:
    """Rule j of VirtualService i; the mix repeats every nine rules."""
    host = services[(i + j) % len(services)].host
    other = services[(i + j + 1) % len(services)].host
    one = (Destination(host),)
    canary = (Destination(host, "v1", 90), Destination(host, "v2", 10))
    kind = j % 9
    if kind == 0:
        return Rule(f"r{j}", Match("prefix", f"{PROBE_PREFIX}{j}/"), one)
    if kind == 1:
        return Rule(f"r{j}", Match("exact", f"/healthz/{j}"), one, timeout="2s")
    if kind == 2:
        return Rule(f"r{j}", Match("regex", f"/items/{j}/[0-9]+(/details)?"), one)
    if kind == 3:
        return Rule(f"r{j}", Match("prefix", f"/api/{j}/", headers=((CANARY_HEADER, "exact", "true"),)),
                    (Destination(host, "v2"),))  # fmt: skip
    if kind == 4:
        return Rule(f"r{j}", Match("prefix", f"/api/{j}/"), canary, timeout="15s")
    if kind == 5:
        return Rule(f"r{j}", Match("prefix", f"/static/{j}/", method="GET", ignore_case=True), one, timeout="5s")
    if kind == 6:
        match = Match("prefix", f"/search/{j}", headers=(("user-agent", "regex", ".*Mobile.*"),))
        return Rule(f"r{j}", match, one, retries=Retry(3, "2s", "5xx,reset,connect-failure"))
    if kind == 7:
        return Rule(f"r{j}", Match("prefix", f"/v2/{j}/", query=(("debug", "exact", "1"),)), one, rewrite_uri="/")
    split = (Destination(host, "v1", 50), Destination(host, "v2", 30), Destination(other, "", 20))
    return Rule(f"r{j}", Match("prefix", f"/mixed/{j}/"), split)


def change_destination(repo: SyntheticRepo, index: int) -> tuple[SyntheticRepo, VirtualService]:
    """Repo with VirtualService `index`'s probe rule (rule 0) moved to the next service — which is on the
    other upstream when the shape has two, so the change is visible through a gateway."""
    vs = repo.virtual_services[index]
    probe = vs.rules[0]
    current = next(s for s in repo.services if s.host == probe.destinations[0].host)
    moved = repo.services[(current.index + 1) % len(repo.services)]
    rules = (replace(probe, destinations=(Destination(moved.host),)), *vs.rules[1:])
    changed = replace(vs, rules=rules)
    return repo.with_virtual_service(changed), changed


def single_gateway_vs(repo: SyntheticRepo, nth: int, gateway: Gateway | None = None) -> VirtualService:
    """The `nth` VirtualService bound to `gateway` alone (default: to any one gateway of the first fleet)."""
    mine = {gateway.ref} if gateway else {g.ref for g in repo.gateways if g.fleet == repo.fleets[0].name}
    candidates = [vs for vs in repo.virtual_services if len(vs.gateways) == 1 and vs.gateways[0] in mine]
    return candidates[nth % len(candidates)]


def probe_path(vs: VirtualService) -> str:
    """A request path rule 0 (the probe rule) of `vs` matches."""
    match = vs.rules[0].match
    assert match is not None and match.path_kind == "prefix"
    return match.path + "x"


# ---------------------------------------------------------------------------------------------- manifests


def render_files(repo: SyntheticRepo) -> Iterator[tuple[str, bytes]]:
    yield "fleets.yaml", dump([fleet_manifest(f, repo.shape) for f in repo.fleets])
    for gateway in repo.gateways:
        yield f"gateways/{gateway.name}.yaml", dump([gateway_manifest(gateway)])
    for service in repo.services:
        yield f"services/{service.name}.yaml", dump([service_entry(service), destination_rule(service)])
    for vs in repo.virtual_services:
        yield vs.path, dump([virtual_service_manifest(vs)])


def dump(documents: list[dict[str, Any]]) -> bytes:
    text: str = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return text.encode()


def fleet_manifest(fleet: Fleet, shape: RepoShape) -> dict[str, Any]:
    rollout = {"waves": list(shape.waves), "bake": shape.bake, "ackTimeout": "10s"}
    return {"apiVersion": FLEET_API, "kind": "Fleet", "metadata": {"name": fleet.name},
            "spec": {"selector": dict(fleet.labels), "rollout": rollout}}  # fmt: skip


def gateway_manifest(gateway: Gateway) -> dict[str, Any]:
    server = {"port": {"number": gateway.port, "name": f"http-{gateway.port}", "protocol": "HTTP"}, "hosts": ["*"]}
    return {"apiVersion": ISTIO_API, "kind": "Gateway",
            "metadata": {"name": gateway.name, "namespace": gateway.namespace},
            "spec": {"selector": dict(gateway.selector), "servers": [server]}}  # fmt: skip


def service_entry(service: Service) -> dict[str, Any]:
    endpoints = [{"address": address, "ports": {"http": port}, "labels": {"version": version}}
                 for address, port, version in service.endpoints]  # fmt: skip
    return {"apiVersion": ISTIO_API, "kind": "ServiceEntry",
            "metadata": {"name": service.name, "namespace": SERVICE_NAMESPACE},
            "spec": {"hosts": [service.host], "ports": [{"number": service.port, "name": "http", "protocol": "HTTP"}],
                     "resolution": "STATIC", "location": "MESH_INTERNAL", "endpoints": endpoints}}  # fmt: skip


def destination_rule(service: Service) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": service.host,
                            "subsets": [{"name": v, "labels": {"version": v}} for v in SUBSETS]}  # fmt: skip
    if service.connection_pool:
        pool = {"tcp": {"maxConnections": 100, "connectTimeout": "2s"},
                "http": {"http1MaxPendingRequests": 64, "maxRetries": 5}}  # fmt: skip
        spec["trafficPolicy"] = {"connectionPool": pool}
    return {"apiVersion": ISTIO_API, "kind": "DestinationRule",
            "metadata": {"name": service.name, "namespace": SERVICE_NAMESPACE}, "spec": spec}  # fmt: skip


def virtual_service_manifest(vs: VirtualService) -> dict[str, Any]:
    spec = {"hosts": [vs.host], "gateways": list(vs.gateways), "http": [_http_rule(r) for r in vs.rules]}
    return {"apiVersion": ISTIO_API, "kind": "VirtualService",
            "metadata": {"name": vs.name, "namespace": vs.namespace}, "spec": spec}  # fmt: skip


def _http_rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name}
    if rule.match is not None:
        out["match"] = [_match(rule.match)]
    out["route"] = [_destination(d, len(rule.destinations)) for d in rule.destinations]
    if rule.timeout:
        out["timeout"] = rule.timeout
    if rule.retries is not None:
        out["retries"] = {"attempts": rule.retries.attempts, "perTryTimeout": rule.retries.per_try_timeout,
                          "retryOn": rule.retries.retry_on}  # fmt: skip
    if rule.rewrite_uri:
        out["rewrite"] = {"uri": rule.rewrite_uri}
    return out


def _match(match: Match) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": {match.path_kind: match.path}}
    if match.ignore_case:
        out["ignoreUriCase"] = True
    if match.headers:
        out["headers"] = {name: {kind: value} for name, kind, value in match.headers}
    if match.method:
        out["method"] = {"exact": match.method}
    if match.query:
        out["queryParams"] = {name: {kind: value} for name, kind, value in match.query}
    return out


def _destination(destination: Destination, count: int) -> dict[str, Any]:
    target: dict[str, Any] = {"host": destination.host}
    if destination.subset:
        target["subset"] = destination.subset
    out: dict[str, Any] = {"destination": target}
    if count > 1:
        out["weight"] = destination.weight
    return out
