"""Manifests the unit tests share: fleet `edge` (selector `app: gw`), the STATIC service `app.internal`,
Gateway `gw` and VirtualServices bound to it. Each helper returns YAML text; `documents` joins them."""

from __future__ import annotations

import textwrap

FLEET = """
apiVersion: reconciler/v1
kind: Fleet
metadata: {name: edge}
spec: {selector: {app: gw}}
"""
SERVICE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app}
spec:
  hosts: [app.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
"""
TO_APP = "route: [{destination: {host: app.internal}}]"


def http_server(port: int = 80, hosts: str = '["*"]') -> str:
    return f"{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: {hosts}}}"


def gateway(*servers: str, name: str = "gw") -> str:
    """A Gateway for fleet `edge` whose servers are YAML flow mappings (default: HTTP on port 80, any host)."""
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {{app: gw}}
  servers: [{", ".join(servers or (http_server(),))}]
"""


def virtual_service(name: str, host: str, *rules: str, gateways: str | None = "[gw]") -> str:
    """`rules` are `http` rules as YAML flow mappings (default: one rule to app.internal); `gateways=None`
    leaves the VirtualService bound to the mesh only."""
    listed = "".join(f"\n  - {rule}" for rule in rules or (f"{{{TO_APP}}}",))
    bound = f"\n  gateways: {gateways}" if gateways is not None else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [{host}]{bound}
  http:{listed}
"""


def destination_rule(name: str, host: str, *spec: str) -> str:
    """A DestinationRule for `host`; `spec` are more lines under `spec:`, e.g. "trafficPolicy: {...}"."""
    more = "".join(f"\n  {line}" for line in spec)
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: "{host}"{more}
"""


def documents(*docs: str) -> str:
    return "\n---\n".join(textwrap.dedent(doc).strip("\n") for doc in docs) + "\n"
