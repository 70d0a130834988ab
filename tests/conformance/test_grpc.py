"""gRPC through a real Envoy: a grpcio client calls through GRPC and HTTP2 gateway servers (h2c) to a grpcio
server on an h2c upstream (ServiceEntry port protocol GRPC), routed by VirtualService match on the method path."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from reconciler.cli.localrun import free_port
from tests.conformance.harness import XdsHarness
from tests.conformance.http_upstreams import documents

AUTHORITY = "grpc.example.com"
SERVICE = "conformance.Echo"


class EchoService:
    """A grpcio server with raw-bytes methods: no generated code needed."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "Say": grpc.unary_unary_rpc_method_handler(self._say),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _say(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls.append("Say")
        context.set_trailing_metadata((("x-answered-by", "echo"),))
        return b"echo:" + request

    def _fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls.append("Fail")
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        raise AssertionError("abort raises")


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoService]:
    service = EchoService()
    service.server.start()
    yield service
    service.server.stop(grace=0).wait()


def grpc_gateway(port: int, protocol: str, echo: EchoService) -> str:
    return documents(
        f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: grpc}}
spec:
  selector: {{app: conformance-gateway}}
  servers:
  - port: {{number: {port}, name: grpc, protocol: {protocol}}}
    hosts: [{AUTHORITY}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo.internal]
  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {echo.port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo}}
spec:
  hosts: [{AUTHORITY}]
  gateways: [grpc]
  http:
  - match: [{{uri: {{prefix: /{SERVICE}/}}}}]
    route: [{{destination: {{host: echo.internal}}}}]
"""
    )


def call(port: int, method: str, payload: bytes = b"ping") -> tuple[bytes, grpc.Call]:
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.default_authority", AUTHORITY)]) as channel:
        stub = channel.unary_unary(method)
        response, call = stub.with_call(payload, timeout=5)
        return response, call


@pytest.mark.parametrize("protocol", ["GRPC", "HTTP2"])
def test_unary_call_through_the_gateway(gateway: XdsHarness, echo: EchoService, protocol: str) -> None:
    port = free_port()
    gateway.apply(grpc_gateway(port, protocol, echo))
    response, answered = call(port, f"/{SERVICE}/Say")
    assert response == b"echo:ping"
    assert ("x-answered-by", "echo") in tuple(answered.trailing_metadata() or ())  # trailers come through


def test_grpc_status_from_the_upstream_comes_through(gateway: XdsHarness, echo: EchoService) -> None:
    port = free_port()
    gateway.apply(grpc_gateway(port, "GRPC", echo))
    with pytest.raises(grpc.RpcError) as failure:
        call(port, f"/{SERVICE}/Fail")
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert failure.value.details() == "no such thing"


def test_unrouted_method_never_reaches_the_upstream(gateway: XdsHarness, echo: EchoService) -> None:
    port = free_port()
    gateway.apply(grpc_gateway(port, "GRPC", echo))
    before = len(echo.calls)
    with pytest.raises(grpc.RpcError) as failure:
        call(port, "/other.Service/Say")
    # Envoy answers 404, which gRPC clients read as UNIMPLEMENTED.
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert len(echo.calls) == before
