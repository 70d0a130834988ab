"""`reconciler`: the command line. Each subcommand lives in `reconciler.cli.commands.<name>`.

User errors are sentences and exit codes, never tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reconciler.cli.commands import bootstrap, demo, history, plan, render, run, status, validate
from reconciler.cli.output import UsageError

COMMANDS = (run, validate, plan, render, bootstrap, status, history, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reconciler", description="GitOps for Envoy gateway fleets.")
    sub = parser.add_subparsers(dest="command")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
        return code
    except UsageError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
