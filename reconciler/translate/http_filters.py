"""The HTTP filter chain of every gateway connection manager, in istiod's order: fault, cors, router.

Fault and CORS are configured per route (typed_per_filter_config); their listener-level configs are empty,
so a route without a fault or CORS policy passes through them untouched.
"""

from __future__ import annotations

from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from reconciler.translate.common import pack

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
ROUTER_FILTER = "envoy.filters.http.router"


def gateway_http_filters() -> list[hcm.HttpFilter]:
    return [
        hcm.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())),
        hcm.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors())),
        hcm.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router())),
    ]
