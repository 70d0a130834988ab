"""The xDS stage: a grpc.aio ADS server that serves fleet snapshots to Envoy nodes."""

from reconciler.xds.server import AdsServer, XdsEvent, start_grpc_server
from reconciler.xds.streams import NodeState, NodeStream

__all__ = ["AdsServer", "NodeState", "NodeStream", "XdsEvent", "start_grpc_server"]
