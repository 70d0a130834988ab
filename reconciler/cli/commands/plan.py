"""`reconciler plan --repo DIR --base REF --head REF`: per-fleet semantic diff for review; exit 0 ok, 1 head invalid.

Both revisions are read from git (committed content only) and built with the daemon's own pipeline; the
head is validated as the daemon would (plus the secret scan and, with `--preflight`, the real Envoy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("plan", help="show what a revision changes for each fleet")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the config repository (default: .)")
    parser.add_argument("--base", required=True, help="the revision deployed now, e.g. origin/main")
    parser.add_argument("--head", default="HEAD", help="the revision to review (default: HEAD)")
    parser.add_argument("--path", default=".", help="the manifests folder inside the repository (default: .)")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    parser.add_argument("--preflight", action="store_true", help="also have the real Envoy validate the head")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from reconciler.diagnostics import sort_findings
    from reconciler.pipeline import build
    from reconciler.plan import compute_plan, render
    from reconciler.source import SourceError, read_tree_at, resolve_at
    from reconciler.validation import scan_for_secrets

    try:
        base_sha, head_sha = resolve_at(args.repo, args.base), resolve_at(args.repo, args.head)
        base_files = read_tree_at(args.repo, base_sha, args.path)
        head_files = read_tree_at(args.repo, head_sha, args.path, all_files=True)  # the secret scan reads all
    except SourceError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 2
    base, head = build(base_files), build(head_files)
    findings = [*head.findings, *scan_for_secrets(head_files)]
    if args.preflight and head.ok:
        from reconciler.validation.preflight import preflight

        findings.extend(preflight(head))
    plan = compute_plan(
        base.snapshots,
        head.snapshots,
        tuple(sort_findings(findings)),
        f"{args.base} ({base_sha[:12]})",
        f"{args.head} ({head_sha[:12]})",
        base_valid=base.ok,
    )
    print(render(plan, args.format), end="")
    return 0 if plan.head_valid else 1
