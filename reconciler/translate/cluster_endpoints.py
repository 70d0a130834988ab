"""ServiceEntry endpoints → a cluster's load assignment: subset labels, ports, weights and localities."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import wrappers_pb2

from reconciler.config.model import Service
from reconciler.manifests.model import UNIX_PREFIX, ServicePort, WorkloadEntry


def uses_eds(service: Service) -> bool:
    # Gateways turn resolution NONE into EDS too (istiod: "gateways fall back to EDS").
    return service.resolution in ("STATIC", "NONE")


def load_assignment(
    name: str, service: Service, port: ServicePort, labels: Mapping[str, str]
) -> endpoint_pb2.ClusterLoadAssignment:
    """One LocalityLbEndpoints per locality, in the order the localities first appear (istiod groups them so)."""
    by_locality: dict[str, list[ec.LbEndpoint]] = {}
    for endpoint in service.selected_endpoints(labels):
        by_locality.setdefault(endpoint.locality, []).append(_lb_endpoint(endpoint, port))
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            ec.LocalityLbEndpoints(locality=_locality(locality), lb_endpoints=endpoints)
            for locality, endpoints in by_locality.items()
        ],
    )


def _lb_endpoint(endpoint: WorkloadEntry, port: ServicePort) -> ec.LbEndpoint:
    if endpoint.address.startswith(UNIX_PREFIX):  # a unix domain socket has no port
        address = address_pb2.Address(pipe=address_pb2.Pipe(path=endpoint.address.removeprefix(UNIX_PREFIX)))
    else:
        address = address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=endpoint.address, port_value=endpoint_port(endpoint, port))
        )
    return ec.LbEndpoint(
        endpoint=ec.Endpoint(address=address),
        # Envoy rejects a weight of 0; unset means 1.
        load_balancing_weight=wrappers_pb2.UInt32Value(value=endpoint.weight) if endpoint.weight else None,
    )


def _locality(locality: str) -> base_pb2.Locality | None:
    """Istio's `region/zone/subzone`; each part may be left out from the right."""
    if not locality:
        return None
    region, zone, sub_zone = ([*locality.split("/", 2), "", ""])[:3]
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)


def endpoint_port(endpoint: WorkloadEntry, port: ServicePort) -> int:
    """The endpoint's own mapping for the port name wins, then the port's targetPort, then its number."""
    return endpoint.ports.get(port.name) or port.target_port or port.number
