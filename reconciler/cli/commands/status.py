"""`reconciler status`: fleets, revisions, rollout phase and each node's sync state."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from reconciler.api.auth import resolve_client_token
from reconciler.cli.status import fetch_status, format_status, watch
from reconciler.redact import SecretFileError

DEFAULT_API = "http://127.0.0.1:8080"


def add_api_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=os.environ.get("RECONCILER_API", DEFAULT_API), help="daemon API base URL")
    parser.add_argument("--token-file", default=None, help="API token file (else $RECONCILER_TOKEN)")


def api_token(args: argparse.Namespace) -> str | None:
    """The bearer token for the API; exits with a sentence when a named file cannot be read."""
    try:
        return resolve_client_token(args.token_file, os.environ)
    except SecretFileError as exc:
        raise SystemExit(f"reconciler: {exc}") from None


def register(sub: Any) -> None:
    parser = sub.add_parser("status", help="fleets, revisions and each node's sync state")
    add_api_argument(parser)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument("--watch", action="store_true", help="redraw every --interval seconds (Ctrl-C stops)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    token = api_token(args)
    if args.watch:
        watch(args.api, token, args.interval)
        return 0
    try:
        status = fetch_status(args.api, token)
    except PermissionError as exc:
        print(f"reconciler: the daemon API refused: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"reconciler: cannot reach the daemon API at {args.api}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.format == "json" else format_status(status))
    return 0
