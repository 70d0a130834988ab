"""Bearer-token auth for the status/control API, and the client side of it for `reconciler status`.

Each token lives in its own file (one Kubernetes Secret key, one systemd credential) and carries one scope:
`read` (GET: status, history, metrics) or `control` (also POST: reconcile now). `/healthz` and `/readyz` stay
open for probes; the webhook path is open here because it carries its own HMAC signature.

Tokens are kept only as SHA-256 digests and compared in constant time against all of them, so neither a
token's value, its length, nor which token nearly matched leaks through timing. Nothing here logs a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from reconciler.api.webhooks import WEBHOOK_PATH
from reconciler.redact import SecretFileError, read_secret_file

__all__ = [
    "OPEN_PATHS",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "ApiToken",
    "Scope",
    "TokenFile",
    "TokenSet",
    "auth_middleware",
    "authorization_header",
    "default_token_file",
    "load_tokens",
    "required_scope",
    "resolve_client_token",
]

log = structlog.get_logger("reconciler.api")

MIN_TOKEN_LENGTH: Final = 16
OPEN_PATHS: Final = frozenset({"/healthz", "/readyz", WEBHOOK_PATH})
TOKEN_ENV: Final = "RECONCILER_TOKEN"
TOKEN_FILE_ENV: Final = "RECONCILER_TOKEN_FILE"
_REALM: Final = 'realm="gateway-reconciler"'
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # what an HTTP header carries without quoting


class Scope(StrEnum):
    READ = "read"
    CONTROL = "control"  # includes read


@dataclass(frozen=True)
class TokenFile:
    """One configured token: `file` holds the token; `name` (default: the file name) appears in logs."""

    file: Path
    scope: Scope
    name: str = ""


@dataclass(frozen=True)
class ApiToken:
    name: str
    scope: Scope
    digest: bytes = field(repr=False)

    def allows(self, needed: Scope) -> bool:
        return self.scope is Scope.CONTROL or needed is Scope.READ


class TokenSet:
    """The accepted tokens. There is no empty set: an API without tokens would be an open API."""

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self._tokens = tuple(tokens)
        if not self._tokens:
            raise ValueError("the API needs at least one token (api.auth.tokens)")
        if len({t.digest for t in self._tokens}) != len(self._tokens):
            raise ValueError("two API token files hold the same token; give each client its own")

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._tokens]

    def authenticate(self, presented: str | None) -> ApiToken | None:
        """The token `presented` is, or None. Every token is compared, whatever matched first."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for token in self._tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _read_token(path: Path, what: str, min_length: int) -> str:
    data = read_secret_file(path, what, min_length)
    try:
        token = data.decode("ascii")
    except UnicodeDecodeError:
        token = ""
    if not _TOKEN_CHARS.fullmatch(token):
        raise SecretFileError(f"{what} in {path} must be printable ASCII without spaces (e.g. `openssl rand -hex 32`)")
    return token


def load_tokens(entries: Iterable[TokenFile]) -> TokenSet:
    """Read each token file. Raises `SecretFileError` (unreadable, empty, short) or ValueError, with sentences."""
    tokens = []
    for entry in entries:
        token = _read_token(entry.file, "the API token", MIN_TOKEN_LENGTH)
        tokens.append(ApiToken(entry.name or entry.file.name, entry.scope, _digest(token)))
    return TokenSet(tokens)


def required_scope(method: str, path: str, open_paths: frozenset[str] = OPEN_PATHS) -> Scope | None:
    """The scope a request needs; None for the open paths. Reading needs `read`, anything else `control`."""
    if path in open_paths:
        return None
    return Scope.READ if method.upper() in _SAFE_METHODS else Scope.CONTROL


def auth_middleware(tokens: TokenSet, open_paths: frozenset[str] = OPEN_PATHS) -> Middleware:
    """aiohttp middleware: 401 without a valid bearer token, 403 when its scope is not enough."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        needed = required_scope(request.method, _routed_path(request), open_paths)
        if needed is None:
            return await handler(request)
        presented = _bearer(request.headers.get(hdrs.AUTHORIZATION, ""))
        token = tokens.authenticate(presented)
        if token is None:
            log.warning("api.unauthenticated", method=request.method, path=request.path, remote=request.remote)
            challenge = f'Bearer {_REALM}, error="invalid_token"' if presented else f"Bearer {_REALM}"
            message = "the bearer token is not valid" if presented else "this endpoint needs a bearer token"
            return _refusal(web.HTTPUnauthorized.status_code, message, challenge)
        if not token.allows(needed):
            log.warning(
                "api.forbidden", method=request.method, path=request.path, client=token.name, remote=request.remote
            )
            challenge = f'Bearer {_REALM}, error="insufficient_scope", scope="{needed}"'
            return _refusal(web.HTTPForbidden.status_code, f"this needs a token with the {needed} scope", challenge)
        if needed is Scope.CONTROL:  # an audit line for every change someone asked for
            log.info("api.control", method=request.method, path=request.path, client=token.name, remote=request.remote)
        return await handler(request)

    return middleware


def _routed_path(request: web.Request) -> str:
    """The path of the route that will answer, so the open-path check sees exactly what the router saw."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def _bearer(header: str) -> str | None:
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _refusal(status: int, message: str, challenge: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={hdrs.WWW_AUTHENTICATE: challenge})


# ---------------------------------------------------------------------- client side (`reconciler status`)


def default_token_file(env: Mapping[str, str]) -> Path | None:
    """$XDG_CONFIG_HOME/gateway-reconciler/token (default ~/.config/...); None without a home."""
    base = env.get("XDG_CONFIG_HOME") or (str(Path(env["HOME"]) / ".config") if env.get("HOME") else "")
    return Path(base) / "gateway-reconciler" / "token" if base else None


def resolve_client_token(flag_file: str | Path | None, env: Mapping[str, str]) -> str | None:
    """The token for API calls: `--token-file`, else $RECONCILER_TOKEN, else $RECONCILER_TOKEN_FILE, else
    the default token file if it exists; None when there is none. A named file that cannot be read is an
    error (`SecretFileError`): silently calling without a token would only end in a confusing 401."""
    if flag_file:
        return _read_token(Path(flag_file), "the API token (--token-file)", 1)
    if env.get(TOKEN_ENV, "").strip():
        return env[TOKEN_ENV].strip()
    if env.get(TOKEN_FILE_ENV, "").strip():
        return _read_token(Path(env[TOKEN_FILE_ENV].strip()), f"the API token (${TOKEN_FILE_ENV})", 1)
    default = default_token_file(env)
    if default is not None and default.is_file():
        return _read_token(default, "the API token", 1)
    return None


def authorization_header(token: str | None) -> dict[str, str]:
    """Request headers carrying `token`, or none."""
    return {"Authorization": f"Bearer {token}"} if token else {}
