"""Upstream-side helpers for the DestinationRule / ServiceEntry / egress / gRPC conformance modules.

`Certificates` makes a throwaway CA with server and client certificates (openssl CLI: the `cryptography`
package is not a dependency); `TlsEchoServer` is the echo upstream behind TLS, optionally requiring a client
certificate. Everything binds 127.0.0.1; fixtures stop what they start.
"""

from __future__ import annotations

import ssl
import subprocess
from collections import Counter
from pathlib import Path

from reconciler.cli.localrun import EchoServer
from tests.conformance.http_upstreams import get


class Certificates:
    """A CA plus leaf certificates signed by it, as PEM files in `folder` (EC P-256: quick to make)."""

    def __init__(self, folder: Path, ca_name: str = "conformance-ca") -> None:
        self.folder = folder
        self.ca = folder / f"{ca_name}.pem"
        self._ca_key = folder / f"{ca_name}.key"
        self._openssl(
            "req", "-x509", "-new", "-nodes", "-days", "2", "-subj", f"/CN={ca_name}",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(self._ca_key), "-out", str(self.ca),
        )  # fmt: skip

    def issue(self, name: str, dns_names: list[str], client: bool = False) -> tuple[Path, Path]:
        """A leaf certificate for `dns_names` (server auth, or client auth) → (certificate, key) paths."""
        cert, key, csr, ext = (self.folder / f"{name}.{suffix}" for suffix in ("pem", "key", "csr", "ext"))
        usage = "clientAuth" if client else "serverAuth"
        sans = ",".join(f"DNS:{d}" for d in dns_names)
        ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage={usage}\n")
        self._openssl(
            "req", "-new", "-nodes", "-subj", f"/CN={dns_names[0]}",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", str(key), "-out", str(csr),
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self._ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return cert, key

    @staticmethod
    def _openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


class TlsEchoServer(EchoServer):
    """The echo upstream behind TLS; with `client_ca` it also demands a client certificate signed by it."""

    def __init__(self, name: str, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        super().__init__(name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        # A failed handshake raises in accept(), which socketserver treats as a dropped connection.
        self.socket = context.wrap_socket(self.socket, server_side=True)


def static_entry(host: str, endpoints: list[str], port: int = 80, protocol: str = "HTTP", name: str = "") -> str:
    """A STATIC ServiceEntry; `endpoints` are flow-style WorkloadEntry mappings."""
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name or host.split(".")[0]}}}
spec:
  hosts: [{host}]
  ports: [{{number: {port}, name: http, protocol: {protocol}}}]
  resolution: STATIC
  endpoints: [{", ".join(endpoints)}]
"""


def endpoint(server: EchoServer, weight: int = 0, **labels: str) -> str:
    """`server` as a WorkloadEntry for port name `http` (weight 0: unset)."""
    label_text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    weight_text = f", weight: {weight}" if weight else ""
    return f"{{address: 127.0.0.1, ports: {{http: {server.port}}}{weight_text}, labels: {{{label_text}}}}}"


def route_all(host: str, destination: str, gateway: str = "gw", extra: str = "") -> str:
    """A VirtualService sending every request for `host` to `destination` (`extra`: more destination keys),
    without retries so each request reaches exactly one upstream."""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {host.split(".")[0]}}}
spec:
  hosts: [{host}]
  gateways: [{gateway}]
  http:
  - route: [{{destination: {{host: {destination}{extra}}}}}]
    retries: {{attempts: 0}}
"""


def upstream_counts(port: int, host: str, requests: int, path: str = "/", **headers: str) -> Counter[str]:
    """Which upstream answered each of `requests` GETs (status must be 200)."""
    counts: Counter[str] = Counter()
    for _ in range(requests):
        response = get(port, path, host=host, **headers)
        assert response.status_code == 200, (response.status_code, response.text)
        counts[response.headers["x-upstream"]] += 1
    return counts
