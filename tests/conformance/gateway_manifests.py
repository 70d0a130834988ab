"""Manifest snippets for the listener-side conformance modules (TLS, TCP, gateway merging).

Each helper returns one YAML document; `documents` joins them. Servers and rules are given as YAML flow
mappings so a case reads like the Istio manifest it mirrors.
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.conformance.certs import KeyPair

GATEWAY_SELECTOR = "{app: conformance-gateway}"


def documents(*docs: str) -> str:
    return "\n---\n".join(doc.strip("\n") for doc in docs)


def gateway_manifest(*servers: str, name: str = "gw", namespace: str = "default") -> str:
    listed = "\n".join(f"  - {server}" for server in servers)
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {GATEWAY_SELECTOR}
  servers:
{listed}"""


def service(
    host: str, endpoints: Mapping[str, int], port: int = 80, protocol: str = "TCP", port_name: str = "main"
) -> str:
    """A STATIC ServiceEntry for `host` whose endpoints (127.0.0.1, at the given ports) carry label
    `version: <name>`, plus a DestinationRule with one subset per endpoint name."""
    name = host.split(".")[0]
    listed = ", ".join(
        f"{{address: 127.0.0.1, ports: {{{port_name}: {p}}}, labels: {{version: {v}}}}}" for v, p in endpoints.items()
    )
    subsets = ", ".join(f"{{name: {v}, labels: {{version: {v}}}}}" for v in endpoints)
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{host}]
  ports: [{{number: {port}, name: {port_name}, protocol: {protocol}}}]
  resolution: STATIC
  endpoints: [{listed}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: {host}
  subsets: [{subsets}]"""


def virtual_service(name: str, hosts: str, body: str, gateways: str = "[gw]", namespace: str = "default") -> str:
    """`body` holds the `http`/`tcp`/`tls` section(s), indented two spaces."""
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: {hosts}
  gateways: {gateways}
{body}"""


def server(port: int, protocol: str, hosts: str, tls: str = "", name: str = "") -> str:
    """One Gateway server as a YAML flow mapping; the port name defaults to the protocol."""
    port_part = f"{{number: {port}, name: {name or protocol.lower()}, protocol: {protocol}}}"
    tls_part = f", tls: {tls}" if tls else ""
    return f"{{port: {port_part}, hosts: {hosts}{tls_part}}}"


def file_tls(pair: KeyPair, mode: str = "SIMPLE", extra: str = "") -> str:
    """`tls` settings with the certificate and key as files on the Envoy host; `extra` adds more fields."""
    return f"{{mode: {mode}, serverCertificate: {pair.certificate}, privateKey: {pair.private_key}{extra}}}"
