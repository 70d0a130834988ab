"""Imports of every Envoy message type we pack into Any fields.

Importing a generated module registers its messages in the default descriptor pool; json_format needs
them to render Any fields (e.g. the HTTP connection manager inside a Listener) in `render` and `plan`.
"""

from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

__all__ = [
    "address_pb2",
    "base_pb2",
    "config_source_pb2",
    "cors_pb2",
    "fault_pb2",
    "http_connection_manager_pb2",
    "http_protocol_options_pb2",
    "previous_hosts_pb2",
    "previous_priorities_config_pb2",
    "route_components_pb2",
    "router_pb2",
    "tcp_proxy_pb2",
    "tls_inspector_pb2",
    "tls_pb2",
]
