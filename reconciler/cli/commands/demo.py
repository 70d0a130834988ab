"""`reconciler demo`: a local config repo, the daemon, a real Envoy and sample upstreams."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# The demo's ports (gateway listener, ADS, API, Envoy admin, the two upstreams), each overridable by a flag.
PORT_DEFAULTS = {"gateway": 8080, "xds": 18000, "api": 18080, "admin": 19000, "blue": 9101, "green": 9102}


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="a local config repo, the daemon, a real Envoy and sample upstreams")
    parser.add_argument("--workdir", type=Path, default=None, help="where to keep the demo's files (default: temp)")
    for name, default in PORT_DEFAULTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=default, dest=f"{name}_port")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from reconciler.cli.demo import DemoPorts, run_demo

    ports = DemoPorts(**{name: getattr(args, f"{name}_port") for name in PORT_DEFAULTS})
    try:
        return run_demo(args.workdir, ports)
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"reconciler demo: {exc}", file=sys.stderr)
        return 1
