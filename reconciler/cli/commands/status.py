"""`reconciler status`: fleets, revisions, rollout phase and each node's sync state."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from reconciler.cli.status import fetch_status, format_status, watch

DEFAULT_API = "http://127.0.0.1:8080"


def add_api_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=os.environ.get("RECONCILER_API", DEFAULT_API), help="daemon API base URL")


def register(sub: Any) -> None:
    parser = sub.add_parser("status", help="fleets, revisions and each node's sync state")
    add_api_argument(parser)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument("--watch", action="store_true", help="redraw every --interval seconds (Ctrl-C stops)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.watch:
        watch(args.api, args.interval)
        return 0
    try:
        status = fetch_status(args.api)
    except OSError as exc:
        print(f"reconciler: cannot reach the daemon API at {args.api}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.format == "json" else format_status(status))
    return 0
