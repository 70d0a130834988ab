"""`reconciler bootstrap`: an Envoy bootstrap (YAML) for one fleet member."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from reconciler.cli.bootstrap import API_TYPES, envoy_bootstrap


def register(sub: Any) -> None:
    parser = sub.add_parser("bootstrap", help="print an Envoy bootstrap for one fleet member")
    parser.add_argument("--fleet", required=True)
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--xds-address", required=True, help="HOST:PORT of the daemon's ADS listener")
    parser.add_argument("--admin-port", required=True, type=int)
    parser.add_argument("--admin-address", default="127.0.0.1")
    parser.add_argument(
        "--listen-address", default="", help="bind this node's gateway listeners here (several nodes on one host)"
    )
    parser.add_argument(
        "--xds-protocol", choices=sorted(API_TYPES), default="sotw",
        help="ADS flavour: sotw (whole set of a type per response) or delta (only what changed)",
    )  # fmt: skip
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        config = envoy_bootstrap(
            args.fleet, args.node_id, args.xds_address, args.admin_port, args.admin_address,
            listen_address=args.listen_address, xds_protocol=args.xds_protocol,
        )  # fmt: skip
    except ValueError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0
