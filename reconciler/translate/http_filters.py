"""The HTTP filter chain of every gateway connection manager, in istiod's order."""

from __future__ import annotations

from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from reconciler.translate.common import pack

ROUTER_FILTER = "envoy.filters.http.router"


def gateway_http_filters() -> list[hcm.HttpFilter]:
    return [hcm.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router()))]
