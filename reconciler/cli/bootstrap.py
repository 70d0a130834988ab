"""Envoy bootstrap for one fleet member: node identity, admin on loopback, ADS pointed at the daemon."""

from __future__ import annotations

import re
from typing import Any

import yaml

from reconciler.config.hosts import is_ip_address

XDS_CLUSTER = "xds_cluster"
# State of the world (every response holds the whole set of a type) or incremental (only what changed).
API_TYPES = {"sotw": "GRPC", "delta": "DELTA_GRPC"}


def envoy_bootstrap(
    fleet: str,
    node_id: str,
    xds_address: str,
    admin_port: int,
    admin_address: str = "127.0.0.1",
    initial_fetch_timeout: str = "15s",
    listen_address: str = "",
    xds_protocol: str = "sotw",
    transport_socket: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`transport_socket`: TLS to the daemon (see `reconciler.xds.security.tls_transport_socket`)."""
    host, _, port = xds_address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--xds-address must be HOST:PORT, got {xds_address!r}")
    ads_source = {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": initial_fetch_timeout}
    return {
        "node": {
            "id": node_id,
            "cluster": fleet,
            "metadata": {
                "admin_url": f"http://{admin_address}:{admin_port}",
                "fleet": fleet,
                # Overrides the address the fleet's default listeners bind, for this node only.
                **({"listen_address": listen_address} if listen_address else {}),
            },
        },
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": API_TYPES[xds_protocol],
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            },
            "cds_config": ads_source,
            "lds_config": ads_source,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC" if is_ip_address(host) else "STRICT_DNS",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {"socket_address": {"address": host, "port_value": int(port)}}
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    **({"transport_socket": transport_socket} if transport_socket else {}),
                }
            ]
        },
        # Envoy's default RE2 program-size limit (100) rejects regexes istiod accepts; istiod raises it too.
        "layered_runtime": {
            "layers": [{"name": "static", "static_layer": {"re2.max_program_size.error_level": 32768}}]
        },
    }


# Words YAML 1.1 readers (Envoy's yaml-cpp among them) take for booleans or null: a node id `n` or `on`
# would reach Envoy as `false` and stop it. PyYAML leaves some of them unquoted.
_AMBIGUOUS = re.compile(r"(?i)y|n|yes|no|on|off|true|false|null|~|[-+]?[0-9][0-9_.:eE+-]*")


class _BootstrapDumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if _AMBIGUOUS.fullmatch(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BootstrapDumper.add_representer(str, _represent_str)


def bootstrap_yaml(config: dict[str, Any]) -> str:
    """The bootstrap as YAML Envoy reads back exactly: every ambiguous string is quoted."""
    return str(yaml.dump(config, Dumper=_BootstrapDumper, sort_keys=False))
