"""Layer-4 upstreams and clients for TCP/TLS cases, all on 127.0.0.1.

`EchoTcpServer` answers one line per connection with `<its name> <the line>` (istio's tcp-echo sample does
the same with a prefix), optionally over TLS with its own certificate, so a test sees which upstream
answered and, through TLS, whose certificate it was shown.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from reconciler.cli.localrun import LOOPBACK
from tests.conformance.certs import KeyPair


class _EchoHandler(socketserver.StreamRequestHandler):
    server: EchoTcpServer

    def handle(self) -> None:
        connection = self.request
        if self.server.tls is not None:
            connection = self.server.tls.wrap_socket(connection, server_side=True)
        with connection.makefile("rwb") as stream:
            line = stream.readline().strip()
            stream.write(f"{self.server.name} {line.decode()}\n".encode())
            stream.flush()


class EchoTcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, certificate: KeyPair | None = None) -> None:
        super().__init__((LOOPBACK, 0), _EchoHandler)
        self.name = name
        self.tls: ssl.SSLContext | None = None
        if certificate is not None:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(certificate.certificate, certificate.private_key)
        self._thread = threading.Thread(target=self.serve_forever, name=f"tcp-echo-{name}", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> EchoTcpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def tcp_exchange(port: int, line: str = "hello", timeout: float = 5.0) -> str:
    """Send one line through a plain TCP port; return the reply line ("" when the gateway closed the connection)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock, sock.makefile("rwb") as stream:
        stream.write(f"{line}\n".encode())
        stream.flush()
        return stream.readline().decode().strip()


@dataclass(frozen=True)
class TlsReply:
    line: str
    peer_certificate: bytes  # DER, as presented to the client


def tls_client(ca: Path, client: KeyPair | None = None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.certificate, client.private_key)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def tls_exchange(port: int, sni: str, context: ssl.SSLContext, line: str = "hello", timeout: float = 5.0) -> TlsReply:
    """One line over TLS with `sni`; the reply and the certificate the server (gateway or upstream) showed."""
    with (
        socket.create_connection((LOOPBACK, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni) as sock,
    ):
        peer = sock.getpeercert(binary_form=True) or b""
        with sock.makefile("rwb") as stream:
            stream.write(f"{line}\n".encode())
            stream.flush()
            return TlsReply(stream.readline().decode().strip(), peer)


def peer_certificate(port: int, sni: str, context: ssl.SSLContext, timeout: float = 5.0) -> bytes:
    """Only the TLS handshake: the DER certificate the listener presents for `sni`."""
    with (
        socket.create_connection((LOOPBACK, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni) as sock,
    ):
        return sock.getpeercert(binary_form=True) or b""


@dataclass(frozen=True)
class HttpsReply:
    status: int
    headers: dict[str, str]
    body: bytes
    peer_certificate: bytes


def https_get(
    port: int, sni: str, context: ssl.SSLContext, path: str = "/", host: str = "", timeout: float = 5.0
) -> HttpsReply:
    """GET over HTTP/1.1 and TLS with an explicit SNI (`host` defaults to it), as curl --resolve does."""
    with (
        socket.create_connection((LOOPBACK, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni) as sock,
    ):
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or sni}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return HttpsReply(response.status, headers, body, sock.getpeercert(binary_form=True) or b"")
