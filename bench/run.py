"""The performance suite of issue 6: every measurement beside its floor, against the issue's targets.

    python -m bench.run            # N = 100, 1k, 10k; K = 100, 1000 (about 15 min on 2 cores)
    python -m bench.run --quick    # N = 100; K = 100 (about 1 min)
    python -m bench.run --only build,change --sizes 1000

Writes bench/results/<name>.json (machine, package versions and git SHA noted) and prints a table.
What each part measures: bench/build_bench.py (full build, one-VS change, profile), bench/fleet_bench.py
(commit → real Envoys, and Envoy's own share), bench/fanout.py (K ADS streams), bench/daemon_rss.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench.build_bench import full_build, one_change, profile_build
from bench.common import ROOT, machine
from bench.daemon_rss import daemon_rss
from bench.fanout import fanout
from bench.fleet_bench import commit_to_fleet, envoy_share
from bench.synthetic import RepoShape, generate
from reconciler.logging import configure_logging
from reconciler.pipeline import Build

PARTS = ("build", "change", "fleet", "fanout", "rss", "profile")
RESULTS = ROOT / "bench" / "results"


class Suite:
    def __init__(self, sizes: Sequence[int], streams: Sequence[int], fleet_size: int, quick: bool) -> None:
        self.sizes, self.streams, self.fleet_size, self.quick = sizes, streams, fleet_size, quick
        self.results: dict[str, Any] = {}
        self.failed: list[str] = []

    def repeats(self, n: int) -> int:
        return 1 if n >= 10_000 or self.quick else 3

    @property
    def change_repeats(self) -> int:
        # A change costs well under a second at every size: a median of 9, since this shared 2-core machine's
        # speed drifts by tens of percent from minute to minute (a git fetch: 19 to 40 ms).
        return 1 if self.quick else 9

    def run(self, part: str, what: str, fn: Callable[[], Any]) -> None:
        _progress(f"{part}: {what} ...")
        started = time.monotonic()
        try:
            value = fn()
        except Exception as exc:  # one broken measurement must not lose the others
            traceback.print_exc()
            value = {"error": f"{type(exc).__name__}: {exc}"}
            self.failed.append(f"{part} ({what})")
        _progress(f"{part}: {what} done in {time.monotonic() - started:.0f} s")
        slot = self.results.setdefault(part, [])
        slot.append(value)

    def all(self, parts: Sequence[str], workdir: Path) -> None:
        if "build" in parts or "change" in parts:
            for n in self.sizes:
                self._build_and_change(n, "change" in parts, workdir)
        if "profile" in parts:
            n = min(max(self.sizes), 1000)  # cProfile doubles the time; 1k shows the same hot spots as 10k
            self.run("profile", f"N={n}", partial(profile_build, generate(RepoShape(n))))
        if "fleet" in parts:
            reps, n = (2 if self.quick else 3), self.fleet_size
            for protocol in ("sotw", "delta"):
                job = partial(commit_to_fleet, n, workdir / f"fleet-{protocol}", repeats=reps, protocol=protocol)
                self.run("commit_to_fleet", f"{protocol} N={n}", job)
            self.run("envoy_share", f"N={n}", partial(envoy_share, n, workdir / "envoy", repeats=reps + 2))
        if "fanout" in parts:
            for protocol in ("sotw", "delta"):
                self.run("fanout", f"{protocol} K={self.streams}", partial(fanout, self.streams, protocol))
        if "rss" in parts:
            for n in self.sizes:
                self.run("daemon_rss", f"N={n}", partial(daemon_rss, n, workdir / f"rss-{n}"))

    def _build_and_change(self, n: int, change: bool, workdir: Path) -> None:
        repo = generate(RepoShape(n))
        repo.files()  # rendered once, outside every timer
        built: list[Build] = []

        def build_part() -> dict[str, Any]:
            result, build = full_build(repo, self.repeats(n))
            built.append(build)
            return result

        self.run("full_build", f"N={n}", build_part)
        if change and built:
            job = partial(one_change, repo, built[0], workdir / f"change-{n}", self.change_repeats)
            self.run("one_change", f"N={n}", job)


# ---------------------------------------------------------------------------------------------- targets and table


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured figure (None where that part did not run)."""
    build = _at(results.get("full_build", []), "virtual_services", 10_000)
    change = _at(results.get("one_change", []), "virtual_services", 10_000)
    fleet = _at(results.get("commit_to_fleet", []), "protocol", "sotw")
    fan = _at(results.get("fanout", []), "protocol", "sotw")
    step = _at(fan["steps"], "streams", 1000) if fan else None
    return [
        _target("full build of 10k VS ≤ 3x the protobuf floor", build, ["ratio_build_over_floor"], 3.0, "x"),
        _target("one-VS change at 10k ≤ 50 ms (new SHA → bytes)", change, ["new_sha_to_bytes_s", "median"], 0.05, "s"),
        _target(
            f"commit → 5-Envoy fleet serving ≤ 1 s at {fleet['virtual_services'] if fleet else 1000} VS",
            fleet,
            ["push_to_all_serving_s", "median"],
            1.0,
            "s",
        ),
        _target("1,000 ADS streams: one push reaches all ≤ 1 s", step, ["push_to_all_received_s", "median"], 1.0, "s"),
        _target("1,000 ADS streams: ≤ 50 KB RSS per idle stream", step, ["rss_per_stream_kb"], 50.0, "KB"),
    ]


def _target(name: str, row: dict[str, Any] | None, path: list[str], limit: float, unit: str) -> dict[str, Any]:
    if row is None:
        return {"target": name, "measured": None, "limit": limit, "unit": unit, "met": None}
    value: Any = row
    for key in path:
        value = value[key]
    measured = float(value)
    return {"target": name, "measured": measured, "limit": limit, "unit": unit, "met": measured <= limit,
            "times_the_limit": round(measured / limit, 2)}  # fmt: skip


def _at(rows: list[dict[str, Any]], key: str, value: object) -> dict[str, Any] | None:
    return next((r for r in rows if r.get(key) == value), None)


def _first(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in rows if "error" not in r), None)


def table(results: dict[str, Any], goals: list[dict[str, Any]]) -> str:
    lines = ["| measurement | size | measured | floor / reference | ratio |", "|---|---:|---:|---:|---:|"]
    for row in results.get("full_build", []):
        if "error" not in row:
            lines.append(
                f"| full build (load→validate→translate→serialize) | N={row['virtual_services']:,} "
                f"| {_s(row['build_s']['min'])} | {_s(row['floor_s']['min'])} protobuf floor "
                f"| {row['ratio_build_over_floor']:.1f}x |"
            )
    for row in results.get("one_change", []):
        if "error" not in row:
            lines.append(
                f"| one-VS change: new SHA → bytes | N={row['virtual_services']:,} "
                f"| {_s(row['new_sha_to_bytes_s']['median'])} | {_s(row['floor_rds_s']['median'])} RDS, "
                f"{_s(row['floor_vhost_s']['median'])} vhost | {row['ratio_over_rds_floor']:,.0f}x RDS |"
            )
            lines.append(
                f"| one-VS change: fetched commit → bytes (without git's fetch) | N={row['virtual_services']:,} "
                f"| {_s(row['fetched_to_bytes_s']['median'])} | | |"
            )
            lines.append(
                f"| one-VS change: state store, snapshot before the push | N={row['virtual_services']:,} "
                f"| {_s(row['state_store_s']['begin_rollout']['median'])} "
                f"| {_s(row['state_store_s']['finish_rollout']['median'])} to finish (prune) | |"
            )
            for kind in ("add", "remove"):
                timing = row[f"{kind}_virtual_service"]["new_sha_to_bytes_s"]
                lines.append(
                    f"| one-VS {kind}: new SHA → bytes | N={row['virtual_services']:,} | {_s(timing['median'])} | | |"
                )
    share = _first(results.get("envoy_share", []))
    for fleet in results.get("commit_to_fleet", []):
        if "error" in fleet:
            continue
        reference = f"{_s(share['set_snapshot_to_all_serving_s']['median'])} ADS push → serving" if share else "-"
        lines.append(
            f"| commit pushed → {fleet['nodes']} {fleet['protocol']} Envoys serving "
            f"| N={fleet['virtual_services']:,} "
            f"| {_s(fleet['push_to_all_serving_s']['median'])} | {reference} | |"
        )
    if share:
        lines.append(
            f"| Envoy's share: ADS push → all ACKed | N={share['virtual_services']:,} "
            f"| {_s(share['set_snapshot_to_all_acked_s']['median'])} | | |"
        )
    for fan in results.get("fanout", []):
        for step in fan.get("steps", []):
            lines.extend(_fanout_rows(fan["protocol"], step))
    for row in results.get("daemon_rss", []):
        if "error" not in row:
            lines.append(
                f"| daemon RSS after applying the repo | N={row['virtual_services']:,} "
                f"| {row['rss_mib']:.0f} MiB | peak {row['peak_rss_mib']:.0f} MiB | |"
            )
            lines.append(
                f"| daemon: one-VS commit pushed → rollout started (API trigger) | N={row['virtual_services']:,} "
                f"| {_s(row['push_to_rollout_started_s']['median'])} | | |"
            )
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for goal in goals:
        shown = "not run" if goal["measured"] is None else f"{goal['measured']} {goal['unit']}"
        verdict = {True: "yes", False: f"no ({goal.get('times_the_limit')}x the limit)", None: "-"}[goal["met"]]
        lines.append(f"| {goal['target']} | {shown} | {verdict} |")
    return "\n".join(lines)


def _fanout_rows(protocol: str, step: dict[str, Any]) -> list[str]:
    size = f"K={step['streams']:,}"
    return [
        f"| ADS fan-out ({protocol}): push → all received | {size} | {_s(step['push_to_all_received_s']['median'])} "
        f"| {_s(step['push_to_all_acked_s']['median'])} all ACKed | |",
        f"| ADS fan-out ({protocol}): server RSS per idle stream | {size} | {step['rss_per_stream_kib']:.0f} KiB "
        f"| {step['live_rss_per_stream_kib']:.0f} KiB live | |",
    ]


def _s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- CLI


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes only: N=100, K=100")
    parser.add_argument("--sizes", type=_numbers, help="VirtualService counts (default 100,1000,10000)")
    parser.add_argument("--streams", type=_numbers, help="ADS stream counts, ascending (default 100,1000)")
    parser.add_argument("--fleet-size", type=int, help="N for the commit → Envoy fleet runs (default 1000)")
    parser.add_argument("--only", type=lambda t: t.split(","), default=list(PARTS), help=f"of {','.join(PARTS)}")
    parser.add_argument("--out", type=Path, help="result file (default bench/results/pipeline[-quick].json)")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    sizes = args.sizes or ([100] if args.quick else [100, 1000, 10_000])
    streams = args.streams or ([100] if args.quick else [100, 1000])
    fleet_size = args.fleet_size or (100 if args.quick else 1000)
    out = args.out or RESULTS / ("pipeline-quick.json" if args.quick else "pipeline.json")
    configure_logging("json", "warning")  # in-process ADS servers would log every connect
    noted = machine()  # before the run: its load average says whether others were busy when it started
    suite = Suite(sizes, streams, fleet_size, args.quick)
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        suite.all(args.only, Path(tmp))
    goals = targets(suite.results)
    report = {
        "benchmark": "gateway-reconciler control plane (issue 6)",
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "machine": noted,
        "config": {
            "sizes": sizes,
            "streams": streams,
            "fleet_size": fleet_size,
            "parts": args.only,
            "repo_shape": "bench/synthetic.py RepoShape defaults: 2 fleets x 2 gateways, 10 routes per VS, "
            "one ServiceEntry + DestinationRule (2 subsets) per 10 VS",
        },
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "targets": goals,
        "results": suite.results,
        "failed": suite.failed,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(suite.results, goals))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
