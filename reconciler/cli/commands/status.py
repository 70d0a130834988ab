"""`reconciler status`: fleets, revisions, rollout phase and each node's sync state."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from reconciler.cli.status import fetch_status, format_status

DEFAULT_API = "http://127.0.0.1:8080"


def register(sub: Any) -> None:
    parser = sub.add_parser("status", help="fleets, revisions and each node's sync state")
    parser.add_argument("--api", default=os.environ.get("RECONCILER_API", DEFAULT_API), help="daemon API base URL")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        status = fetch_status(args.api)
    except OSError as exc:
        print(f"reconciler: cannot reach the daemon API at {args.api}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.format == "json" else format_status(status))
    return 0
