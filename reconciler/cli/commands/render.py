"""`reconciler render DIR --fleet NAME`: the exact xDS resources a fleet's Envoys receive."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from reconciler.cli.output import print_findings, read_folder
from reconciler.translate import TranslateOptions


def register(sub: Any) -> None:
    parser = sub.add_parser("render", help="print the xDS resources a fleet's Envoys receive")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--fleet", required=True)
    parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
    parser.add_argument("--bind-address", default="0.0.0.0", help="address listeners bind without a Gateway bind")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from reconciler.pipeline import build

    files = read_folder(args.dir)
    result = build(files, TranslateOptions(default_bind=args.bind_address))
    if not result.ok:
        print_findings(result.findings, "text", len(result.manifests.resources), stream=sys.stderr)
        return 1
    snapshot = result.snapshots.get(args.fleet)
    if snapshot is None:
        known = ", ".join(sorted(result.snapshots)) or "none"
        print(f"reconciler: no Fleet named {args.fleet!r} in {args.dir} (fleets: {known})", file=sys.stderr)
        return 1
    print(dump(snapshot.to_dict(), args.format), end="")
    return 0


def dump(rendered: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rendered, indent=2) + "\n"
    return str(yaml.safe_dump(rendered, sort_keys=False, width=120))
