"""Secrets hygiene in one place: what may never reach a log line, a status page or an error message.

Three layers, from exact to heuristic:
- secrets the process itself loaded (webhook secret, API tokens) are registered with `default_redactor`
  by `read_secret_file`, and every occurrence is masked wherever it turns up;
- credentials in URLs (`https://user:token@host`) and PEM private-key blocks are recognised by shape;
- well-known token formats (GitHub, GitLab, `Bearer ...`) are masked even when nobody registered them,
  since git and HTTP libraries quote them in their own error texts.

`SecretRedactor` is a structlog processor: put it right before the renderer so it sees the final values.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "REDACTED",
    "SecretFileError",
    "SecretRedactor",
    "default_redactor",
    "read_secret_file",
    "redact_text",
    "redact_url",
    "register_secret",
    "url_secrets",
]

MASK: Final = "***"
REDACTED: Final = "[redacted]"
_REDACTED_KEY: Final = "[redacted private key]"

# scheme://userinfo@host... anywhere in a text (git quotes URLs in its errors).
_URL_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s'\"]*@")
# A whole PEM (or OpenSSH / PGP armoured) private key, or its truncated start when a message was cut short.
_PEM_PRIVATE_KEY: Final = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# Token formats with a recognisable prefix, and HTTP bearer credentials.
_KNOWN_TOKENS: Final = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,})"
    r"|(?<=\bBearer )[A-Za-z0-9._~+/=-]+",
    re.IGNORECASE,
)
# URL userinfo parts at least this long are also scrubbed as bare strings (tokens are long; "git" is not).
_MIN_URL_SECRET_LEN: Final = 6
# Registered secrets shorter than this are not masked as bare strings: masking "ab" would mangle every text.
_MIN_REGISTERED_LEN: Final = 8
# Event keys whose whole value is secret, whatever it looks like.
_SENSITIVE_KEYS: Final = frozenset(
    {"authorization", "token", "secret", "password", "passphrase", "private_key", "api_key", "credentials", "cookie"}
)
_SENSITIVE_SUFFIXES: Final = ("_token", "_secret", "_password", "_private_key", "_api_key")


class SecretFileError(Exception):
    """A secret file could not be used. The message names the file, never its content."""


def redact_url(url: str) -> str:
    """The URL without its userinfo (`https://user:token@host/x` → `https://host/x`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_USERINFO.sub(r"\g<scheme>", url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def url_secrets(url: str) -> list[str]:
    """Userinfo pieces of a URL worth scrubbing from free text, raw and percent-decoded, longest first."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return []
    userinfo = netloc.rpartition("@")[0]
    if not userinfo:
        return []
    pieces = {userinfo, unquote(userinfo)}
    for part in userinfo.split(":"):
        pieces.update({part, unquote(part)})
    return sorted((p for p in pieces if len(p) >= _MIN_URL_SECRET_LEN), key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str | bytes] = ()) -> str:
    """`text` with private keys, URL credentials, well-known tokens and each of `secrets` masked."""
    text = _PEM_PRIVATE_KEY.sub(_REDACTED_KEY, text)
    text = _URL_USERINFO.sub(r"\g<scheme>", text)
    text = _KNOWN_TOKENS.sub(MASK, text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted({_as_text(s) for s in secrets}, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def _as_text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _is_sensitive_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    return name in _SENSITIVE_KEYS or name.endswith(_SENSITIVE_SUFFIXES)


class SecretRedactor:
    """A structlog processor that masks secrets in every value of an event, nested containers included."""

    def __init__(self, secrets: Iterable[str | bytes] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | bytes) -> None:
        """Mask `secret` from now on (too-short values are refused at load time, see `read_secret_file`)."""
        text = _as_text(secret).strip()
        if len(text) >= _MIN_REGISTERED_LEN:
            with self._lock:  # copy-on-write: loggers on other threads read the old set meanwhile
                self._secrets = self._secrets | {text}

    def redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value, self._secrets)
        if isinstance(value, bytes):
            return redact_text(value.decode("utf-8", "backslashreplace"), self._secrets)
        if isinstance(value, Mapping):
            return {k: REDACTED if _is_sensitive_key(k) else self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v) for v in value]
        if isinstance(value, BaseException):
            return redact_text(str(value), self._secrets)
        return value

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            event_dict[key] = REDACTED if _is_sensitive_key(key) else self.redact(value)
        return event_dict


# The process-wide redactor: `reconciler.logging` installs it, secret loaders register with it.
default_redactor: Final = SecretRedactor()


def register_secret(secret: str | bytes) -> None:
    default_redactor.add(secret)


def read_secret_file(path: str | Path, what: str, min_length: int = 16) -> bytes:
    """The content of a secret file without surrounding whitespace, registered with `default_redactor`.

    `what` names the secret for error messages ("the webhook secret"). A short secret is refused: it can be
    guessed, and it could not be masked in logs without mangling them.
    """
    file = Path(path)
    try:
        data = file.read_bytes().strip()
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} from {file}: {exc.strerror or exc}") from None
    if not data:
        raise SecretFileError(f"{what} file {file} is empty; put the secret in it (e.g. `openssl rand -hex 32`)")
    if len(data) < min_length:
        raise SecretFileError(
            f"{what} in {file} is shorter than {min_length} characters; use a random one (e.g. `openssl rand -hex 32`)"
        )
    register_secret(data)
    return data
