"""Serialization benchmark: xds-protos (google protobuf / upb) vs envoy-data-plane (betterproto2).

Reproduces the measurement behind our choice of ``xds-protos`` for building
Envoy resources.  Workload: one ``RouteConfiguration`` with N virtual hosts
(one per VirtualService); each virtual host has 2 domains and 10 routes
(prefix match -> cluster).  Per size we time three phases, each on a fresh
message tree:

* construct -- build the message tree from plain Python data,
* serialize -- encode it to wire bytes,
* parse     -- decode those wire bytes back into a message.

``envoy-data-plane`` must not live in the project venv, so it is installed
into a throwaway venv (default ``bench/.venv-edp``) and each implementation is
measured in its own worker subprocess (``--worker xds`` with this interpreter,
``--worker edp`` with the throwaway venv's).  Afterwards both wire encodings
are parsed with google protobuf and compared (``wire_equal``).

Usage::

    python bench/serialization.py [--sizes 100,1000,10000 | --quick]
                                  [--out bench/results/serialization.json]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_SIZES = (100, 1000, 10000)
QUICK_SIZES = (100, 1000)
DEFAULT_OUT = BENCH_DIR / "results" / "serialization.json"
DEFAULT_EDP_VENV = BENCH_DIR / ".venv-edp"
EDP_VERSION = "2.2.0"
EDP_REQUIREMENT = f"envoy-data-plane=={EDP_VERSION}"

DOMAINS_PER_VHOST = 2
ROUTES_PER_VHOST = 10
BEST_OF = 3
BEST_OF_MAX_VHOSTS = 1000  # larger sizes are measured once
PHASES = ("construct", "serialize", "parse")

# worker name -> (display name, distributions whose versions are reported)
IMPLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xds": ("xds-protos", ("xds-protos", "protobuf")),
    "edp": ("envoy-data-plane", ("envoy-data-plane", "betterproto2", "pydantic", "pydantic-core")),
}

# (name, domains, routes); each route is (name, prefix, cluster)
RouteSpec = tuple[str, str, str]
VHostSpec = tuple[str, list[str], list[RouteSpec]]


@dataclass(frozen=True)
class Codec:
    build: Callable[[list[VHostSpec]], Any]
    serialize: Callable[[Any], bytes]
    parse: Callable[[bytes], Any]


def workload(vhosts: int) -> list[VHostSpec]:
    """Plain-data description of the RouteConfiguration (built outside the timers)."""
    return [
        (
            f"vs-{i}",
            [f"svc-{i}.example{d}.com" for d in range(DOMAINS_PER_VHOST)],
            [(f"vs-{i}-route-{j}", f"/api/v{j}/", f"outbound|8080||svc-{i}-v{j}") for j in range(ROUTES_PER_VHOST)],
        )
        for i in range(vhosts)
    ]


def xds_codec() -> Codec:
    from envoy.config.route.v3 import (
        route_components_pb2 as rc,
    )
    from envoy.config.route.v3 import route_pb2

    def build(spec: list[VHostSpec]) -> Any:
        return route_pb2.RouteConfiguration(
            name="ingress",
            virtual_hosts=[
                rc.VirtualHost(
                    name=name,
                    domains=domains,
                    routes=[
                        rc.Route(
                            name=route_name,
                            match=rc.RouteMatch(prefix=prefix),
                            route=rc.RouteAction(cluster=cluster),
                        )
                        for route_name, prefix, cluster in routes
                    ],
                )
                for name, domains, routes in spec
            ],
        )

    return Codec(
        build=build,
        serialize=lambda msg: msg.SerializeToString(),
        parse=route_pb2.RouteConfiguration.FromString,
    )


def edp_codec() -> Codec:
    from envoy_data_plane.envoy.config.route.v3 import (  # type: ignore[import-not-found]
        Route,
        RouteAction,
        RouteConfiguration,
        RouteMatch,
        VirtualHost,
    )

    def build(spec: list[VHostSpec]) -> Any:
        return RouteConfiguration(
            name="ingress",
            virtual_hosts=[
                VirtualHost(
                    name=name,
                    domains=domains,
                    routes=[
                        Route(
                            name=route_name,
                            match=RouteMatch(prefix=prefix),
                            route=RouteAction(cluster=cluster),
                        )
                        for route_name, prefix, cluster in routes
                    ],
                )
                for name, domains, routes in spec
            ],
        )

    return Codec(build=build, serialize=bytes, parse=RouteConfiguration.parse)


CODECS: dict[str, Callable[[], Codec]] = {"xds": xds_codec, "edp": edp_codec}


def timed(fn: Callable[[Any], Any], arg: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn(arg)
    return time.perf_counter() - start, result


def measure(codec: Codec, vhosts: int, wire_path: Path) -> dict[str, Any]:
    """Best-of-N wall time per phase; every repetition builds a fresh tree."""
    spec = workload(vhosts)
    runs = BEST_OF if vhosts <= BEST_OF_MAX_VHOSTS else 1
    best = dict.fromkeys(PHASES, float("inf"))
    wire = b""
    for _ in range(runs):
        t_construct, msg = timed(codec.build, spec)
        t_serialize, wire = timed(codec.serialize, msg)
        t_parse, _ = timed(codec.parse, wire)
        for phase, seconds in zip(PHASES, (t_construct, t_serialize, t_parse), strict=True):
            best[phase] = min(best[phase], seconds)
    wire_path.write_bytes(wire)
    return {"virtual_hosts": vhosts, "runs": runs, "wire_bytes": len(wire), "seconds": best}


def dist_versions(names: Sequence[str]) -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in names}


def run_worker(impl: str, sizes: Sequence[int], wire_dir: Path) -> None:
    """Measure one implementation; JSON result on stdout, progress on stderr."""
    display, dists = IMPLS[impl]
    codec = CODECS[impl]()
    codec.parse(codec.serialize(codec.build(workload(1))))  # warm up lazy class setup
    results = []
    for vhosts in sizes:
        print(f"[{display}] {vhosts} virtual hosts ...", file=sys.stderr, flush=True)
        results.append(measure(codec, vhosts, wire_dir / f"{impl}-{vhosts}.bin"))
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "packages": dist_versions(dists),
    }
    if impl == "xds":
        from google.protobuf.internal import api_implementation  # type: ignore[import-untyped, unused-ignore]

        info["protobuf_backend"] = api_implementation.Type()
    json.dump({"impl": info, "results": results}, sys.stdout)


def ensure_edp_venv(venv: Path) -> Path:
    """Create (or reuse) the throwaway venv holding envoy-data-plane; return its python."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('envoy-data-plane'))"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True, check=False).stdout.strip()
        if found == EDP_VERSION:
            return python
    print(f"creating {venv} with {EDP_REQUIREMENT} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", EDP_REQUIREMENT], check=True)
    return python


def spawn_worker(python: Path, impl: str, sizes: Sequence[int], wire_dir: Path) -> dict[str, Any]:
    cmd = [
        str(python),
        str(Path(__file__).resolve()),
        "--worker",
        impl,
        "--sizes",
        ",".join(map(str, sizes)),
        "--wire-dir",
        str(wire_dir),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def compare_wire(xds_wire: bytes, edp_wire: bytes) -> dict[str, bool]:
    """Parse both encodings with google protobuf and compare the messages."""
    from envoy.config.route.v3 import route_pb2

    parse = route_pb2.RouteConfiguration.FromString
    return {"wire_equal": bool(parse(xds_wire) == parse(edp_wire)), "bytes_identical": xds_wire == edp_wire}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def combine(sizes: Sequence[int], xds: dict[str, Any], edp: dict[str, Any], wire_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for vhosts, x, e in zip(sizes, xds["results"], edp["results"], strict=True):
        routes = vhosts * ROUTES_PER_VHOST
        phases = {
            phase: {
                "xds-protos_s": sig(x["seconds"][phase]),
                "envoy-data-plane_s": sig(e["seconds"][phase]),
                "xds-protos_us_per_route": sig(x["seconds"][phase] / routes * 1e6),
                "envoy-data-plane_us_per_route": sig(e["seconds"][phase] / routes * 1e6),
                "ratio_edp_over_xds": sig(e["seconds"][phase] / x["seconds"][phase]),
            }
            for phase in PHASES
        }
        wire = compare_wire(
            (wire_dir / f"xds-{vhosts}.bin").read_bytes(), (wire_dir / f"edp-{vhosts}.bin").read_bytes()
        )
        rows.append(
            {
                "virtual_hosts": vhosts,
                "routes": routes,
                "runs": x["runs"],
                "wire_bytes": {"xds-protos": x["wire_bytes"], "envoy-data-plane": e["wire_bytes"]},
                **wire,
                "phases": phases,
            }
        )
    return rows


def sig(value: float) -> float:
    """Round to 4 significant digits (timer noise is far larger than that)."""
    return float(f"{value:.4g}")


def human(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3)):
        if seconds >= scale:
            return f"{seconds / scale:,.3g} {unit}"
    return f"{seconds * 1e6:.3g} µs"


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| routes (vhosts) | phase | xds-protos | µs/route | envoy-data-plane | µs/route | edp/xds |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for phase, p in row["phases"].items():
            lines.append(
                f"| {row['routes']:,} ({row['virtual_hosts']:,}) | {phase} "
                f"| {human(p['xds-protos_s'])} | {p['xds-protos_us_per_route']:.3g} "
                f"| {human(p['envoy-data-plane_s'])} | {p['envoy-data-plane_us_per_route']:,.0f} "
                f"| {p['ratio_edp_over_xds']:,.0f}x |"
            )
    equal = ", ".join(f"{row['routes']:,}: {row['wire_equal']}" for row in rows)
    lines.append(f"\nwire_equal (edp bytes parsed by google protobuf == xds-protos message): {equal}")
    return "\n".join(lines)


def run_bench(sizes: Sequence[int], out: Path, edp_venv: Path) -> bool:
    edp_python = ensure_edp_venv(edp_venv)
    with tempfile.TemporaryDirectory(prefix="bench-serialization-") as tmp:
        wire_dir = Path(tmp)
        xds = spawn_worker(Path(sys.executable), "xds", sizes, wire_dir)
        edp = spawn_worker(edp_python, "edp", sizes, wire_dir)
        rows = combine(sizes, xds, edp, wire_dir)
    report = {
        "benchmark": "Envoy RouteConfiguration construct/serialize/parse: xds-protos vs envoy-data-plane",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python bench/serialization.py", *sys.argv[1:]]),
        "workload": {
            "resource": "envoy.config.route.v3.RouteConfiguration (one)",
            "virtual_hosts": "N, one per VirtualService",
            "domains_per_vhost": DOMAINS_PER_VHOST,
            "routes_per_vhost": ROUTES_PER_VHOST,
            "route": "prefix match -> cluster",
        },
        "method": {
            "clock": "time.perf_counter wall time; gc.collect() before each phase, gc on while timed",
            "repeats": f"best of {BEST_OF} for N <= {BEST_OF_MAX_VHOSTS} virtual hosts, else one run",
            "isolation": "one worker process per implementation; envoy-data-plane in a throwaway venv",
            "wire_equal": "both encodings parsed with google protobuf (xds-protos), messages compared",
            "bytes_identical": "false is expected: betterproto2 writes fields in .proto declaration order "
            "(Route.name = 14 first), upb in field-number order",
            "parse_note": "upb materialises Python wrapper objects lazily, on field access",
        },
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
        },
        "implementations": {"xds-protos": xds["impl"], "envoy-data-plane": edp["impl"]},
        "results": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render_table(rows))
    print(f"\nwrote {out}")
    return all(row["wire_equal"] for row in rows)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--sizes",
        type=parse_sizes,
        default=",".join(map(str, DEFAULT_SIZES)),
        help="comma-separated virtual-host counts (10 routes each); default %(default)s",
    )
    which.add_argument(
        "--quick",
        action="store_const",
        const=list(QUICK_SIZES),
        dest="sizes",
        help=f"shorthand for --sizes {','.join(map(str, QUICK_SIZES))}",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file; default %(default)s")
    parser.add_argument(
        "--edp-venv",
        type=Path,
        default=DEFAULT_EDP_VENV,
        help="throwaway venv for envoy-data-plane (created if missing); default %(default)s",
    )
    parser.add_argument("--worker", choices=sorted(IMPLS), help=argparse.SUPPRESS)
    parser.add_argument("--wire-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        if args.wire_dir is None:
            parser.error("--worker needs --wire-dir")
        run_worker(args.worker, args.sizes, args.wire_dir)
        return 0
    return 0 if run_bench(args.sizes, args.out, args.edp_venv) else 1


if __name__ == "__main__":
    sys.exit(main())
