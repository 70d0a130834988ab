"""`reconciler run --config FILE`: the daemon."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("run", help="run the daemon")
    parser.add_argument("--config", required=True, type=Path, help="daemon config file (YAML)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from reconciler.daemon.app import Daemon
    from reconciler.daemon.config import ConfigError, load_config
    from reconciler.logging import configure_logging
    from reconciler.redact import SecretFileError
    from reconciler.state import StateError
    from reconciler.xds.security import TlsConfigError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log.format, config.log.level)
    try:
        daemon = Daemon(config)
    except (SecretFileError, TlsConfigError, StateError, ValueError, FileNotFoundError) as exc:  # say which file
        print(f"reconciler: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(daemon.run())
    except (OSError, RuntimeError, TlsConfigError) as exc:
        print(f"reconciler: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
