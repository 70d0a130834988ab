"""`reconciler history FLEET`: every rollout, rollback and rejection of a fleet, newest first."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from reconciler.cli.commands.status import add_api_argument, api_token
from reconciler.cli.status import fetch_json, format_history


def register(sub: Any) -> None:
    parser = sub.add_parser("history", help="a fleet's rollouts, rollbacks and rejections")
    parser.add_argument("fleet")
    add_api_argument(parser)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        payload = fetch_json(
            args.api, f"/api/v1/fleets/{quote(args.fleet)}/history?limit={args.limit}", api_token(args)
        )
    except (LookupError, PermissionError) as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"reconciler: cannot reach the daemon API at {args.api}: {exc}", file=sys.stderr)
        return 1
    history = payload["history"]
    print(json.dumps(history, indent=2) if args.format == "json" else format_history(args.fleet, history))
    return 0
