"""`reconciler`: the command line (argparse). User errors are sentences and exit codes, never tracebacks."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from reconciler.cli.bootstrap import envoy_bootstrap
from reconciler.cli.output import print_findings, read_folder
from reconciler.translate import TranslateOptions

DEFAULT_API = "http://127.0.0.1:8080"
# The demo's ports (gateway listener, ADS, API, Envoy admin, the two upstreams), each overridable by a flag.
DEMO_PORT_DEFAULTS = {
    "gateway": 8080,
    "xds": 18000,
    "api": 18080,
    "admin": 19000,
    "blue": 9101,
    "green": 9102,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
        return code
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reconciler", description="GitOps for Envoy gateway fleets.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, type=Path, help="daemon config file (YAML)")
    run.set_defaults(handler=_run)

    validate = sub.add_parser("validate", help="validate a manifests folder")
    validate.add_argument("dir", nargs="?", default=".", type=Path)
    validate.add_argument("--format", choices=["text", "json", "github"], default="text")
    validate.add_argument("--lenient", action="store_true", help="unknown fields are warnings, as istiod drops them")
    validate.set_defaults(handler=_validate)

    render = sub.add_parser("render", help="print the xDS resources a fleet's Envoys receive")
    render.add_argument("dir", type=Path)
    render.add_argument("--fleet", required=True)
    render.add_argument("--format", choices=["yaml", "json"], default="yaml")
    render.add_argument("--bind-address", default="0.0.0.0", help="address listeners bind without a Gateway bind")
    render.set_defaults(handler=_render)

    boot = sub.add_parser("bootstrap", help="print an Envoy bootstrap for one fleet member")
    boot.add_argument("--fleet", required=True)
    boot.add_argument("--node-id", required=True)
    boot.add_argument("--xds-address", required=True, help="HOST:PORT of the daemon's ADS listener")
    boot.add_argument("--admin-port", required=True, type=int)
    boot.add_argument("--admin-address", default="127.0.0.1")
    boot.set_defaults(handler=_bootstrap)

    status = sub.add_parser("status", help="fleets, revisions and each node's sync state")
    status.add_argument("--api", default=os.environ.get("RECONCILER_API", DEFAULT_API))
    status.add_argument("--format", choices=["text", "json"], default="text")
    status.set_defaults(handler=_status)

    demo = sub.add_parser("demo", help="a local config repo, the daemon, a real Envoy and sample upstreams")
    demo.add_argument("--workdir", type=Path, default=None, help="where to keep the demo's files (default: a temp dir)")
    for name, default in DEMO_PORT_DEFAULTS.items():
        demo.add_argument(f"--{name}-port", type=int, default=default, dest=f"{name}_port")
    demo.set_defaults(handler=_demo)
    return parser


def _run(args: argparse.Namespace) -> int:
    from reconciler.daemon.app import Daemon
    from reconciler.daemon.config import ConfigError, load_config
    from reconciler.logging import configure_logging

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log.format, config.log.level)
    try:
        asyncio.run(Daemon(config).run())
    except OSError as exc:
        print(f"reconciler: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    from reconciler.pipeline import build

    files = read_folder(args.dir)
    if files is None:
        print(f"reconciler: {args.dir} is not a folder", file=sys.stderr)
        return 2
    result = build(files, lenient=args.lenient)
    print_findings(result.findings, args.format, len(result.manifests.resources))
    return 0 if result.ok else 1


def _render(args: argparse.Namespace) -> int:
    from reconciler.pipeline import build

    files = read_folder(args.dir)
    if files is None:
        print(f"reconciler: {args.dir} is not a folder", file=sys.stderr)
        return 2
    result = build(files, TranslateOptions(default_bind=args.bind_address))
    if not result.ok:
        print_findings(result.findings, "text", len(result.manifests.resources), stream=sys.stderr)
        return 1
    snapshot = result.snapshots.get(args.fleet)
    if snapshot is None:
        known = ", ".join(sorted(result.snapshots)) or "none"
        print(f"reconciler: no Fleet named {args.fleet!r} in {args.dir} (fleets: {known})", file=sys.stderr)
        return 1
    rendered = snapshot.to_dict()
    if args.format == "json":
        print(json.dumps(rendered, indent=2, sort_keys=False))
    else:
        print(yaml.safe_dump(rendered, sort_keys=False, width=120), end="")
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    try:
        config = envoy_bootstrap(args.fleet, args.node_id, args.xds_address, args.admin_port, args.admin_address)
    except ValueError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0


def _status(args: argparse.Namespace) -> int:
    from reconciler.cli.status import fetch_status, format_status

    try:
        status = fetch_status(args.api)
    except OSError as exc:
        print(f"reconciler: cannot reach the daemon API at {args.api}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.format == "json" else format_status(status))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from reconciler.cli.demo import DemoPorts, run_demo

    ports = DemoPorts(**{name: getattr(args, f"{name}_port") for name in DEMO_PORT_DEFAULTS})
    try:
        return run_demo(args.workdir, ports)
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"reconciler demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
