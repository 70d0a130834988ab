"""Control-plane CPU: the full build of an N-VirtualService repo, and a one-VirtualService change in it, each
beside its protobuf floor (bench/floor.py) measured in the same run."""

from __future__ import annotations

import asyncio
import cProfile
import gc
import pstats
import statistics
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from google.protobuf.message import Message

from bench import floor
from bench.common import ROOT, sig, summary, timed, write_tree
from bench.synthetic import SyntheticRepo, VirtualService, change_destination, single_gateway_vs
from reconciler import pipeline
from reconciler.diagnostics import Finding
from reconciler.heap import retire_from_collection
from reconciler.pipeline import Build, build
from reconciler.pipeline_cache import BuildCache
from reconciler.source import GitSource
from reconciler.state import StateStore
from reconciler.translate.snapshot import PUSH_ORDER, ROUTE, Snapshot
from reconciler.validation.preflight import Preflight, PreflightOptions
from reconciler.validation.secrets import SecretScanner
from reconciler.xds.server import control_plane_field, response_body
from tests.support import GitRemote

T = TypeVar("T")
STAGES = ("load_manifests", "resolve", "validate", "translate_fleet")


@contextmanager
def stage_clock() -> Iterator[dict[str, float]]:
    """Seconds spent in each stage `pipeline.build` calls (and, inside translation, in Snapshot.build:
    serializing and hashing every resource), measured by wrapping the very functions it calls."""
    spent = dict.fromkeys((*STAGES, "snapshot (serialize+hash)"), 0.0)

    def clocked(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    original_snapshot = Snapshot.build.__func__  # type: ignore[attr-defined]
    snapshot = clocked("snapshot (serialize+hash)", lambda messages: original_snapshot(Snapshot, list(messages)))
    with (
        mock.patch.multiple(pipeline, **{name: clocked(name, getattr(pipeline, name)) for name in STAGES}),
        mock.patch.object(Snapshot, "build", staticmethod(snapshot)),
    ):
        yield spent


def full_build(repo: SyntheticRepo, repeats: int) -> tuple[dict[str, Any], Build]:
    files = repo.files()
    fleets = [f.name for f in repo.fleets]
    build_s: list[float] = []
    stage_runs: list[dict[str, float]] = []
    result: Build | None = None
    for _ in range(repeats):
        gc.collect()
        with stage_clock() as stages:
            seconds, result = timed(build, files)
        build_s.append(seconds)
        stage_runs.append(dict(stages))
    assert result is not None
    if not result.ok:
        raise RuntimeError("the synthetic repo has errors: " + "; ".join(str(f) for f in result.findings[:5]))
    construct_s, serialize_s, floor_s = [], [], []
    bodies: list[list[bytes]] = []
    for _ in range(repeats):
        gc.collect()
        t_construct, messages = timed(_construct, repo, fleets)
        t_serialize, bodies = timed(_serialize, messages)
        construct_s.append(t_construct)
        serialize_s.append(t_serialize)
        floor_s.append(t_construct + t_serialize)
    fastest = stage_runs[build_s.index(min(build_s))]
    return {
        "virtual_services": len(repo.virtual_services),
        "routes": repo.route_count(),
        "files": len(files),
        "manifest_bytes": sum(map(len, files.values())),
        "resources": {f: result.snapshots[f].count() for f in fleets},
        "build_s": summary(build_s),
        "build_stages_s": {k: sig(v) for k, v in fastest.items()},
        "floor_s": summary(floor_s),
        "floor_construct_s": summary(construct_s),
        "floor_serialize_s": summary(serialize_s),
        "ratio_build_over_floor": sig(min(build_s) / min(floor_s)),
        "floor_check": _compare(result, fleets, bodies),
    }, result


def _construct(repo: SyntheticRepo, fleets: Sequence[str]) -> list[list[Message]]:
    return [list(floor.fleet_messages(repo, f)) for f in fleets]


def _serialize(messages: list[list[Message]]) -> list[list[bytes]]:
    return [[m.SerializeToString(deterministic=True) for m in fleet] for fleet in messages]


def _compare(result: Build, fleets: Sequence[str], floor_bodies: list[list[bytes]]) -> dict[str, Any]:
    """Does the floor build the same resources? (Byte-identical is the goal; the counts say how close.)"""
    pipeline_bodies = {r.body for f in fleets for r in result.snapshots[f].all_resources()}
    flat = [b for fleet in floor_bodies for b in fleet]
    return {
        "floor_resources": len(flat),
        "pipeline_resources": sum(result.snapshots[f].count() for f in fleets),
        "byte_identical": sum(b in pipeline_bodies for b in flat),
        "floor_bytes": sum(map(len, flat)),
        "pipeline_bytes": sum(len(r.body) for f in fleets for r in result.snapshots[f].all_resources()),
    }


# ---------------------------------------------------------------------------------------------- one change


def one_change(repo: SyntheticRepo, applied: Build, workdir: Path, repeats: int) -> dict[str, Any]:
    """A commit that edits one VirtualService: the daemon's path from the new SHA to response bytes; then as
    many commits that add a VirtualService and remove it again, timed the same way.

    That path is the daemon's after a webhook: fetch (no ls-remote first: the push said the branch moved) +
    read the tree (changed blobs only) + a build with the daemon's BuildCache + the daemon's gate (the secret
    scan and the Envoy preflight of every fleet snapshot that changed, as `Daemon._gate` runs them) + finding
    what changed + the DiscoveryResponse bodies of the changed types (what the ADS server then sends to every
    node).
    The floor is the protobuf work an edit needs: rebuilding the route configurations that hold the
    VirtualService (SotW RDS resends them whole), and — the floor of VHDS or per-host splitting — its one
    virtual host.
    """
    remote = GitRemote(workdir / "git")
    write_tree(remote.work, repo.files())
    remote.commit_and_push("synthetic repo")
    source = GitSource(remote.url, "main", ".", workdir / "mirror")
    source.fetch()
    preflight = Preflight(PreflightOptions(live=True))  # as the daemon runs it (daemon config preflight.live)
    preflight.check(applied)  # the daemon preflighted the applied revision already: those verdicts are cached
    pipeline = _DaemonPath(source, preflight)
    applied, _ = pipeline.step(applied)  # the daemon's caches, scanner and source hold the applied revision's work
    store = StateStore(workdir / "state")
    _store_rollouts(store, None, applied, "applied")  # the daemon stored the applied revision when it rolled out
    edits: dict[str, list[float]] = {k: [] for k in CHANGE_STAGES}
    stored: dict[str, list[float]] = {"begin_rollout": [], "finish_rollout": []}
    rds_floor, vhost_floor, pushed = [], [], []
    edited: list[VirtualService] = []
    for attempt in range(repeats):
        repo, changed = change_destination(repo, single_gateway_vs(repo, attempt).index)
        write_tree(remote.work, {changed.path: repo.files()[changed.path]})
        remote.commit_and_push(f"move {changed.name}'s probe route")
        before = applied
        applied, bodies = pipeline.step(applied, edits)
        for key, seconds in zip(stored, _store_rollouts(store, before, applied, f"edit-{attempt}"), strict=True):
            stored[key].append(seconds)
        pushed.append(sum(map(len, bodies)))
        edited.append(changed)
    # The floors after the series, not between its steps: building a route configuration from scratch grows the
    # heap by more than the daemon keeps (heap.HeapTrimmer), so the next step would write its response into
    # fresh pages, which the daemon, building no floors, does not (10k: diff and bytes 8.4 ms instead of ~2).
    for changed in edited:
        t_rds, _ = timed(_rds_floor, repo, changed)
        t_vhost, _ = timed(_vhost_floor, repo, changed)
        rds_floor.append(t_rds)
        vhost_floor.append(t_vhost)
    adds: dict[str, list[float]] = {k: [] for k in CHANGE_STAGES}
    removes: dict[str, list[float]] = {k: [] for k in CHANGE_STAGES}
    for attempt in range(repeats):
        path, content = _added_virtual_service(repo, attempt)
        write_tree(remote.work, {path: content})
        remote.commit_and_push(f"add {path}")
        applied, _ = pipeline.step(applied, adds)
        (remote.work / path).unlink()
        remote.commit_and_push(f"remove {path}")
        applied, _ = pipeline.step(applied, removes)
    repo, changed = change_destination(repo, single_gateway_vs(repo, repeats).index)
    lags = loop_lag_during(partial(build, cache=pipeline.cache), repo.files())
    preflight.close()
    source.close()
    store.close()
    totals = _totals(edits)
    return {
        "virtual_services": len(repo.virtual_services),
        "new_sha_to_bytes_s": summary(totals),
        "fetched_to_bytes_s": summary([total - fetch for total, fetch in zip(totals, edits["fetch"], strict=True)]),
        "stages_s": {k: summary(v) for k, v in edits.items()},
        "state_store_s": {k: summary(v) for k, v in stored.items()},
        "response_bytes": max(pushed),
        "floor_rds_s": summary(rds_floor),
        "floor_vhost_s": summary(vhost_floor),
        "ratio_over_rds_floor": sig(min(totals) / min(rds_floor)),
        "ratio_over_vhost_floor": sig(min(totals) / min(vhost_floor)),
        **{
            f"{kind}_virtual_service": {
                "new_sha_to_bytes_s": summary(_totals(stages)),
                "stages_s": {k: summary(v) for k, v in stages.items()},
            }
            for kind, stages in (("add", adds), ("remove", removes))
        },
        "event_loop_lag_during_build_ms": lags,
    }


CHANGE_STAGES = ("fetch", "read_tree", "build", "gate", "diff_and_bytes")


class _DaemonPath:
    """The daemon's work from a pushed commit to response bytes, with the caches it keeps between revisions
    (reconciler/daemon/app.py): its BuildCache, secret scanner, preflight and source."""

    def __init__(self, source: GitSource, preflight: Preflight) -> None:
        self.source, self.preflight = source, preflight
        self.cache = BuildCache()
        self.scanner = SecretScanner()

    def step(
        self, applied: Build, stages: dict[str, list[float]] | None = None
    ) -> tuple[Build, list[bytes]]:  # fmt: skip
        """The pushed head taken from fetch to bytes; each stage's seconds appended to `stages` (if given)."""
        gc.collect()
        t_fetch, head = timed(self.source.fetch)
        t_read, files = timed(self.source.read_files, head)
        t_build, result = timed(partial(build, cache=self.cache), files)
        t_gate, findings = timed(_gate, self.scanner, self.preflight, files, result)
        if findings:
            raise RuntimeError(f"the daemon's gate refuses the change: {findings[0]}")
        retire_from_collection()  # as the daemon does once the rollouts started (off the timed path there too)
        t_bytes, bodies = timed(changed_responses, applied, result)
        if stages is not None:
            for key, value in zip(CHANGE_STAGES, (t_fetch, t_read, t_build, t_gate, t_bytes), strict=True):
                stages[key].append(value)
        return result, bodies


def _store_rollouts(store: StateStore, before: Build | None, after: Build, revision: str) -> tuple[float, float]:
    """Seconds the daemon's state store spends on a revision, over the fleets whose snapshot changed: storing
    each snapshot before its push (`begin_rollout`), then recording the success, which prunes (`finish_rollout`)."""
    begin = finish = 0.0
    for fleet, snapshot in after.snapshots.items():
        old = before.snapshots.get(fleet) if before is not None else None
        if old is not None and old.version == snapshot.version:
            continue
        seconds, _ = timed(store.begin_rollout, fleet, revision, snapshot, "Rollout", time.time())
        begin += seconds
        seconds, _ = timed(store.finish_rollout, fleet, revision, "Rollout", "Succeeded", "", time.time(), {})
        finish += seconds
    return begin, finish


def _totals(stages: dict[str, list[float]]) -> list[float]:
    return [sum(step) for step in zip(*stages.values(), strict=True)]


def _added_virtual_service(repo: SyntheticRepo, nth: int) -> tuple[str, bytes]:
    """A new VirtualService file: a copy of an existing one under another name, for another host."""
    original = single_gateway_vs(repo, nth)
    content = repo.files()[original.path]
    name, host = f"{original.name}-added-{nth}", f"added-{nth}-{original.host}"
    copy = content.replace(f"name: {original.name}".encode(), f"name: {name}".encode())
    return original.path.replace(".yaml", f"-added-{nth}.yaml"), copy.replace(original.host.encode(), host.encode())


def loop_lag_during(fn: Callable[[T], Any], arg: T) -> dict[str, float]:
    """How late an asyncio loop's 1 ms timer fires while `fn(arg)` runs in a worker thread, as the daemon's
    build does beside the loop that serves ADS and the API: the GIL cost of building in a thread."""

    async def sample() -> list[float]:
        work = asyncio.ensure_future(asyncio.to_thread(fn, arg))
        lags = []
        while not work.done():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(1000 * (time.perf_counter() - start - 0.001))
        await work
        return sorted(lags)

    lags = asyncio.run(sample())
    return {
        "ticks": len(lags),
        "median": sig(statistics.median(lags)),
        "p99": sig(lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))]),
        "max": sig(lags[-1]),
    }


def _gate(scanner: SecretScanner, preflight: Preflight, files: dict[str, bytes], result: Build) -> list[Finding]:
    return [*scanner.scan(files), *(f for f in preflight.check(result) if f.is_error)]


def changed_responses(before: Build, after: Build) -> list[bytes]:
    """The DiscoveryResponse body of every type whose version moved, per fleet, as the ADS server builds them
    (`AdsServer._body`): shared by all nodes of the fleet; a route response carries only the route
    configurations that changed, the other types all their resources."""
    control_plane = control_plane_field("gateway-reconciler")
    bodies = []
    for fleet, snapshot in after.snapshots.items():
        old = before.snapshots.get(fleet)
        for type_url in PUSH_ORDER:
            if old is not None and old.type_versions[type_url] == snapshot.type_versions[type_url]:
                continue
            resources = snapshot.of_type(type_url).values()
            if old is not None and type_url == ROUTE:
                held = old.of_type(ROUTE)
                resources = [r for r in resources if r.name not in held or held[r.name].digest != r.digest]
            version = snapshot.type_versions[type_url]
            bodies.append(response_body(version, type_url, [r.pieces for r in resources], control_plane))
    return bodies


def _rds_floor(repo: SyntheticRepo, changed: VirtualService) -> list[bytes]:
    out = []
    for ref in changed.gateways:
        gateway = repo.gateway(ref)
        refs = {g.ref for g in repo.gateways if g.fleet == gateway.fleet and g.port == gateway.port}
        bound = sorted((v for v in repo.virtual_services if refs.intersection(v.gateways)), key=lambda v: v.host)
        out.append(floor.route_config(gateway.port, bound).SerializeToString(deterministic=True))
    return out


def _vhost_floor(repo: SyntheticRepo, changed: VirtualService) -> list[bytes]:
    return [
        floor.virtual_host(changed, repo.gateway(ref).port).SerializeToString(deterministic=True)
        for ref in changed.gateways
    ]


# ---------------------------------------------------------------------------------------------- profile


def profile_build(repo: SyntheticRepo, top: int = 25) -> dict[str, Any]:
    """cProfile of one full build: where the time goes, by own time and by cumulative time."""
    files = repo.files()
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    build(files)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = [
        {"function": _where(key), "calls": nc, "own_s": sig(tt), "cumulative_s": sig(ct),
         "own_share": sig(tt / total), "cumulative_share": sig(ct / total)}
        for key, (_, nc, tt, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
    ]  # fmt: skip
    by_own = sorted(rows, key=lambda r: -r["own_s"])[:top]
    by_cumulative = sorted((r for r in rows if "reconciler/" in r["function"]), key=lambda r: -r["cumulative_s"])[:top]
    return {
        "virtual_services": len(repo.virtual_services),
        "profiled_total_s": sig(total),
        "top_own_time": by_own,
        "top_cumulative_reconciler": by_cumulative,
    }


def _where(key: tuple[str, int, str]) -> str:
    file, line, name = key
    for prefix in (str(ROOT) + "/", sysconfig.get_paths()["stdlib"] + "/"):
        file = file.removeprefix(prefix)
    if "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    return f"{file}:{line}({name})" if line else name
