"""TLS and mTLS for the ADS listener, and which node identity may ask for which fleet.

An Envoy says which fleet it belongs to in `node.cluster` — a claim anyone can make. With mTLS the daemon
also knows who is asking: the names in the client certificate (its SANs; the CN only when there are none).
`NodeAuthorizer` binds the two: identity patterns from the daemon config → the fleets they may receive.
`authorizing_handler` wraps the ADS gRPC handler so a stream whose first request claims a fleet its
certificate does not allow is refused with PERMISSION_DENIED before the ADS server sees it.

`server_credentials` re-reads the certificate files when they change (cert-manager, a rotated Secret), at
the next handshake, so rotating the daemon's certificate or the client CA needs no restart.
"""

from __future__ import annotations

import inspect
import re
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
import structlog

from reconciler.config.hosts import is_ip_address
from reconciler.xds.server import RequestReader

__all__ = [
    "NodeAuthorizer",
    "PeerIdentity",
    "TlsConfigError",
    "authorizing_handler",
    "peer_identity",
    "server_credentials",
    "tls_transport_socket",
]

log = structlog.get_logger("reconciler.xds")

ANY: Final = "*"
_SAN_PROPERTY: Final = "x509_subject_alternative_name"
_CN_PROPERTY: Final = "x509_common_name"
_PEM_CERTIFICATE: Final = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY: Final = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")


class TlsConfigError(Exception):
    """A TLS file is missing or is not what it should be. The message names the file, never its content."""


# ---------------------------------------------------------------------- server credentials


@dataclass(frozen=True)
class _PemFiles:
    cert: Path
    key: Path
    client_ca: Path | None

    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) if self.client_ca is None else (self.cert, self.key, self.client_ca)

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """What changes when any file is replaced (a Kubernetes Secret update swaps a symlink: stat follows it)."""
        stats = [p.stat() for p in self.paths()]
        return tuple((s.st_mtime_ns, s.st_size) for s in stats)

    def load(self) -> grpc.ServerCertificateConfiguration:
        cert = _read_pem(self.cert, "the xDS server certificate", _PEM_CERTIFICATE)
        key = _read_pem(self.key, "the xDS server private key", _PEM_KEY)
        ca = None if self.client_ca is None else _read_pem(self.client_ca, "the xDS client CA", _PEM_CERTIFICATE)
        self._check_pair()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _check_pair(self) -> None:
        """Refuse a key that is not the certificate's (a rotation caught halfway): gRPC would take it and
        then fail every handshake."""
        try:
            # An empty password: an encrypted key fails here instead of prompting on a terminal.
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.cert, self.key, password="")
        except (ssl.SSLError, OSError):
            raise TlsConfigError(
                f"the xDS server private key {self.key} is not the key of the certificate {self.cert} "
                "(or is encrypted: gRPC needs an unencrypted key)"
            ) from None


def _read_pem(path: Path, what: str, marker: bytes | re.Pattern[bytes]) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {what} from {path}: {exc.strerror or exc}") from None
    found = marker.search(data) if isinstance(marker, re.Pattern) else marker in data
    if not found:
        raise TlsConfigError(f"{what} file {path} holds no PEM block of the expected kind")
    return data


class _Reloader:
    """The certificate fetcher gRPC calls at each handshake: new files → new configuration, else None."""

    def __init__(self, files: _PemFiles) -> None:
        self._files = files
        self._lock = threading.Lock()  # gRPC may call from several of its threads at once
        self._stamp = files.stamp()
        self._failed: tuple[tuple[int, int], ...] | None = None  # warn once per bad change, not per handshake

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                stamp = self._files.stamp()
            except OSError as exc:  # a file replaced right now: keep serving with what we have
                log.warning("xds.tls_reload_failed", error=str(exc))
                return None
            if stamp in (self._stamp, self._failed):
                return None
            try:
                configuration = self._files.load()
            except (OSError, TlsConfigError) as exc:  # mid-rotation: keep serving with what we have
                self._failed = stamp
                log.warning("xds.tls_reload_failed", error=str(exc))
                return None
            self._stamp = stamp
        log.info("xds.tls_reloaded", files=[str(p) for p in self._files.paths()])
        return configuration


def server_credentials(cert_file: str | Path, key_file: str | Path, client_ca_file: str | Path | None = None) -> Any:
    """gRPC server credentials: TLS with `cert_file`/`key_file`, plus mTLS when `client_ca_file` is given —
    then every client must present a certificate issued by that CA, or its handshake fails."""
    files = _PemFiles(Path(cert_file), Path(key_file), None if client_ca_file is None else Path(client_ca_file))
    initial = files.load()
    return grpc.dynamic_ssl_server_credentials(
        initial, _Reloader(files), require_client_authentication=client_ca_file is not None
    )


# ---------------------------------------------------------------------- identity and authorization


@dataclass(frozen=True)
class PeerIdentity:
    """The names a client certificate vouches for: its SANs (URI, DNS, ...), or its CN when it has none."""

    names: tuple[str, ...]

    def __str__(self) -> str:
        return ", ".join(self.names)


def peer_identity(context: grpc.aio.ServicerContext) -> PeerIdentity | None:
    """The verified client certificate's identity, or None without one (plain TCP or server-only TLS)."""
    properties: Mapping[str, Iterable[bytes]] = context.auth_context() or {}
    for name in (_SAN_PROPERTY, _CN_PROPERTY):  # RFC 6125: the CN counts only when there is no SAN
        values = tuple(v.decode("utf-8", "replace") for v in properties.get(name, ()))
        if values:
            return PeerIdentity(values)
    return None


def _pattern(identity: str) -> re.Pattern[str]:
    """`*` is one path segment in a URI (spiffe://td/fleet/*) and one label in a DNS name (*.edge.example)."""
    is_uri = "://" in identity
    wildcard = "[^/]+" if is_uri else "[^.]+"
    # DNS names compare case-insensitively; URI paths (SPIFFE IDs) do not.
    return re.compile(wildcard.join(re.escape(part) for part in identity.split(ANY)), 0 if is_uri else re.IGNORECASE)


class NodeAuthorizer:
    """Identity patterns → the fleets they may receive. `*` alone as an identity matches every identity
    (only for trusted networks); `*` as a fleet means every fleet."""

    def __init__(self, rules: Mapping[str, Iterable[str]]) -> None:
        self._rules = [(identity, _pattern(identity), frozenset(fleets)) for identity, fleets in rules.items()]

    def allowed_fleets(self, identity: PeerIdentity) -> frozenset[str]:
        allowed: set[str] = set()
        for pattern_text, pattern, fleets in self._rules:
            if pattern_text == ANY or any(pattern.fullmatch(name) for name in identity.names):
                allowed |= fleets
        return frozenset(allowed)

    def check(self, identity: PeerIdentity | None, fleet: str) -> str | None:
        """None if `identity` may receive `fleet`, else the sentence to refuse with."""
        if identity is None:
            return (
                f"fleet {fleet!r} needs a client certificate: xDS node authorization is on and this node "
                "presented none (configure the bootstrap's TLS transport socket; see `reconciler bootstrap`)"
            )
        allowed = self.allowed_fleets(identity)
        if fleet in allowed or ANY in allowed:
            return None
        granted = f"it may receive {', '.join(sorted(allowed))}" if allowed else "no rule in xds.authorization names it"
        return f"certificate identity [{identity}] is not authorized for fleet {fleet!r}: {granted}"


def authorizing_handler(inner: grpc.GenericRpcHandler, authorizer: NodeAuthorizer) -> grpc.GenericRpcHandler:
    """`inner` (e.g. `AdsServer.handler()`), with each stream's first request checked by `authorizer`.

    The first request carries the node (Envoy sets it on the first message only), so the fleet is fixed
    for the stream's life. A refused stream ends with PERMISSION_DENIED and an `xds.unauthorized` warning.
    """
    return _AuthorizingHandler(inner, authorizer)


class _AuthorizingHandler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc has no type hints
    def __init__(self, inner: grpc.GenericRpcHandler, authorizer: NodeAuthorizer) -> None:
        self._inner, self._authorizer = inner, authorizer

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = self._inner.service(handler_call_details)
        if method is None or method.stream_stream is None:
            return method
        return grpc.stream_stream_rpc_method_handler(
            self._guard(method.stream_stream),
            request_deserializer=method.request_deserializer,
            response_serializer=method.response_serializer,
        )

    def _guard(self, stream: Callable[..., Any]) -> Callable[..., Any]:
        """`stream` behind the check, in its own flavour: a coroutine handler (it writes its responses, as
        `AdsServer`'s do) or an async generator one (it yields them). Either gets the requests as a
        `RequestReader`, gRPC's own iterator left unused."""
        if inspect.isasyncgenfunction(stream):

            async def guarded_generator(_: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                admitted = await self._admit(context)
                if admitted is not None:
                    async for response in stream(admitted, context):
                        yield response

            return guarded_generator

        async def guarded(_: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
            admitted = await self._admit(context)
            if admitted is not None:
                await stream(admitted, context)

        return guarded

    async def _admit(self, context: grpc.aio.ServicerContext) -> RequestReader | None:
        """The stream's requests, the first (already read) included, if its node may have the fleet it claims;
        None if the client sent nothing. A refused stream is aborted (PERMISSION_DENIED)."""
        first = await anext(RequestReader(context), None)
        if first is None:
            return None
        fleet, node = str(first.node.cluster), str(first.node.id)
        identity = peer_identity(context)
        refusal = self._authorizer.check(identity, fleet)
        if refusal is not None:
            log.warning("xds.unauthorized", fleet=fleet, node=node, identity=str(identity or ""))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        return RequestReader(context, first)


# ---------------------------------------------------------------------- Envoy side (bootstrap)


def tls_transport_socket(
    ca: str | Path, cert: str | Path | None, key: str | Path | None, sni: str, server_name: str | None = None
) -> dict[str, Any]:
    """The `transport_socket` for the bootstrap's xds_cluster: verify the daemon's certificate against `ca`
    and its SAN against `server_name` (default `sni`), and present `cert`/`key` for mTLS. `sni` is the
    daemon's host as the node dials it; an IP address is matched as an IP SAN and sent without SNI.

    Envoy checks only the chain unless told which name to expect, so the SAN match is always set.
    """
    if (cert is None) != (key is None):
        raise ValueError("give both the client certificate and its key, or neither")
    expected = server_name or sni
    san_type = "IP_ADDRESS" if is_ip_address(expected) else "DNS"
    common: dict[str, Any] = {
        "alpn_protocols": ["h2"],  # gRPC is HTTP/2
        # Envoy's upstream default stops at TLS 1.2; the daemon (gRPC/BoringSSL) speaks 1.3.
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
        "validation_context": {
            "trusted_ca": {"filename": str(ca)},
            "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": expected}}],
        },
    }
    if cert is not None and key is not None:
        common["tls_certificates"] = [
            {"certificate_chain": {"filename": str(cert)}, "private_key": {"filename": str(key)}}
        ]
    context: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common,
    }
    if not is_ip_address(sni):  # SNI carries host names only (RFC 6066)
        context["sni"] = sni
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}
