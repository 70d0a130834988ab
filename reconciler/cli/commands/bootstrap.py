"""`reconciler bootstrap`: an Envoy bootstrap (YAML) for one fleet member."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler.cli.bootstrap import API_TYPES, bootstrap_yaml, envoy_bootstrap
from reconciler.xds.security import tls_transport_socket


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
    tls = parser.add_argument_group("TLS to the daemon (xds.tls in its config)")
    tls.add_argument("--xds-ca-file", help="CA that signed the daemon's certificate; turns TLS on")
    tls.add_argument("--xds-cert-file", help="this node's client certificate (mutual TLS)")
    tls.add_argument("--xds-key-file", help="this node's private key (mutual TLS)")
    tls.add_argument("--xds-server-name", help="the name on the daemon's certificate (default: the xDS host)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        config = envoy_bootstrap(
            args.fleet, args.node_id, args.xds_address, args.admin_port, args.admin_address,
            listen_address=args.listen_address, xds_protocol=args.xds_protocol, transport_socket=_tls(args),
        )  # fmt: skip
    except ValueError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 2
    print(bootstrap_yaml(config), end="")
    return 0


def _tls(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.xds_ca_file:
        if args.xds_cert_file or args.xds_key_file:
            raise ValueError("--xds-cert-file/--xds-key-file need --xds-ca-file (the daemon's CA)")
        return None
    host = args.xds_address.rpartition(":")[0]
    return tls_transport_socket(args.xds_ca_file, args.xds_cert_file, args.xds_key_file, host, args.xds_server_name)
