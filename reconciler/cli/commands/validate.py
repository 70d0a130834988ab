"""`reconciler validate [DIR]`: findings for a manifests folder; exit 0 valid, 1 invalid, 2 usage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reconciler.cli.output import print_findings, read_folder


def register(sub: Any) -> None:
    parser = sub.add_parser("validate", help="validate a manifests folder")
    parser.add_argument("dir", nargs="?", default=".", type=Path)
    parser.add_argument("--format", choices=["text", "json", "github"], default="text")
    parser.add_argument("--lenient", action="store_true", help="unknown fields are warnings, as istiod drops them")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from reconciler.pipeline import build

    files = read_folder(args.dir)
    if files is None:
        print(f"reconciler: {args.dir} is not a folder", file=sys.stderr)
        return 2
    result = build(files, lenient=args.lenient)
    print_findings(result.findings, args.format, len(result.manifests.resources))
    return 0 if result.ok else 1
