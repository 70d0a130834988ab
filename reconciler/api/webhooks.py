"""Push webhooks (`POST /hooks/git`): GitHub, GitLab and a generic HMAC-SHA256 signature.

A webhook is only a hint to poll now: the daemon never applies what a payload says, it fetches the branch
from git and checks it as usual. So a forged or replayed delivery can at worst cause an extra fetch — and
even that is refused without the shared secret. The poll stays on as the safety net for lost deliveries.

Checks run cheapest first, and nothing is parsed before the signature holds:
rate limit (429) → size (413) → signature (401) → headers (400) → replay (409) → payload (400) →
event / branch (200, ignored) → accepted (202).

`WebhookVerifier` is pure apart from its clock and its two bounded memories (rate and delivery ids), so it is
tested without sockets; `webhook_handler` wraps it for aiohttp and reads at most `max_body + 1` bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import StreamReader, web

from reconciler.redact import read_secret_file, register_secret

__all__ = [
    "WEBHOOK_PATH",
    "DeliveryLog",
    "PushEvent",
    "TokenBucket",
    "WebhookLimits",
    "WebhookVerdict",
    "WebhookVerifier",
    "webhook_handler",
]

log = structlog.get_logger("reconciler.webhook")

WEBHOOK_PATH: Final = "/hooks/git"
MIN_SECRET_LENGTH: Final = 16

GITHUB, GITLAB, GENERIC = "github", "gitlab", "generic"
_BRANCH_PREFIX: Final = "refs/heads/"
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 and SHA-256 object names
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII: it is logged and kept in memory
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


@dataclass(frozen=True)
class WebhookLimits:
    max_body: int = 1024 * 1024  # bytes; push payloads list at most 20 commits and are far smaller
    rate_per_second: float = 2.0  # sustained deliveries per second (all branches, all providers)
    burst: int = 60
    dedupe_entries: int = 10_000  # delivery ids remembered ...
    dedupe_ttl: float = 24 * 3600.0  # ... for this long (seconds)
    read_timeout: float = 10.0  # seconds for the whole body to arrive (slow clients are cut off)


@dataclass(frozen=True)
class PushEvent:
    """A verified push to the followed branch. `sha` is empty when the push deleted the branch."""

    provider: str
    delivery_id: str
    branch: str
    sha: str


@dataclass(frozen=True)
class WebhookVerdict:
    """How to answer a delivery: `status` is the HTTP status, `message` a sentence for the sender's UI."""

    status: int
    message: str
    provider: str = ""
    delivery_id: str = ""
    branch: str = ""
    sha: str = ""
    retry_after: float = 0.0  # seconds, for 429

    @property
    def accepted(self) -> bool:
        return self.status == HTTPStatus.ACCEPTED

    @property
    def push(self) -> PushEvent | None:
        return PushEvent(self.provider, self.delivery_id, self.branch, self.sha) if self.accepted else None


class TokenBucket:
    """`burst` requests at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self._rate, self._burst, self._clock = rate, float(burst), clock
        self._tokens, self._updated = float(burst), clock()

    def take(self) -> float:
        """0.0 if a request may pass now (and count it), else the seconds until one may."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class DeliveryLog:
    """Delivery ids seen in the last `ttl` seconds, at most `capacity` of them (oldest forgotten first)."""

    def __init__(self, capacity: int, ttl: float, clock: Callable[[], float]) -> None:
        self._capacity, self._ttl, self._clock = capacity, ttl, clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # insertion order is time order

    def seen_before(self, delivery_id: str) -> bool:
        """Whether `delivery_id` was recorded within the TTL; records it if not."""
        now = self._clock()
        while self._seen and now - next(iter(self._seen.values())) > self._ttl:
            self._seen.popitem(last=False)
        if delivery_id in self._seen:
            return True
        self._seen[delivery_id] = now
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._seen)


class _Rejected(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class WebhookVerifier:
    """Decides each delivery for one followed `branch`, with one shared `secret` for every provider."""

    def __init__(
        self,
        secret: bytes,
        branch: str,
        clock: Callable[[], float] = time.monotonic,
        limits: WebhookLimits | None = None,
    ) -> None:
        if not secret:
            raise ValueError(
                "a webhook secret is required: webhooks have no unauthenticated mode; "
                "set webhook.secret_file to a file holding a random secret (e.g. `openssl rand -hex 32`)"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the webhook secret must be at least {MIN_SECRET_LENGTH} characters long")
        register_secret(secret)
        self._secret = secret
        self._token_digest = hashlib.sha256(secret).digest()
        self.branch = branch
        self.limits = limits or WebhookLimits()
        self._bucket = TokenBucket(self.limits.rate_per_second, self.limits.burst, clock)
        self._deliveries = DeliveryLog(self.limits.dedupe_entries, self.limits.dedupe_ttl, clock)

    def __repr__(self) -> str:
        return f"WebhookVerifier(branch={self.branch!r}, secret=[redacted])"

    @classmethod
    def from_file(cls, path: str | Path, branch: str, limits: WebhookLimits | None = None) -> WebhookVerifier:
        """Raises `reconciler.redact.SecretFileError` with a sentence when the file is missing or too short."""
        secret = read_secret_file(path, "the webhook secret", MIN_SECRET_LENGTH)
        return cls(secret, branch, limits=limits)

    # ------------------------------------------------------------------ decisions

    def verify(self, headers: Mapping[str, str], body: bytes) -> WebhookVerdict:
        """The whole decision for one delivery whose body was read in full (or to `max_body + 1` bytes)."""
        return self.admit(len(body)) or self.check(headers, body)

    def admit(self, declared_length: int | None) -> WebhookVerdict | None:
        """Before reading the body: rate limit and declared size. None means "read the body, then check"."""
        wait = self._bucket.take()
        if wait > 0:
            return WebhookVerdict(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"too many webhook deliveries; retry in {math.ceil(wait)} s (the poll catches up meanwhile)",
                retry_after=wait,
            )
        if declared_length is not None and declared_length > self.limits.max_body:
            return self._too_large()
        return None

    def check(self, headers: Mapping[str, str], body: bytes) -> WebhookVerdict:
        """After reading the body: everything but the rate limit."""
        if len(body) > self.limits.max_body:
            return self._too_large()
        lowered = {k.lower(): v for k, v in headers.items()}
        provider, delivery_id = "", ""
        try:
            provider = self._authenticate(lowered, body)
            delivery_id = _delivery_id(provider, lowered)
            if self._deliveries.seen_before(f"{provider}:{delivery_id}"):
                raise _Rejected(HTTPStatus.CONFLICT, f"delivery {delivery_id} was already received; ignoring replay")
            return self._decide(provider, delivery_id, lowered, body)
        except _Rejected as rejected:
            return WebhookVerdict(rejected.status, rejected.message, provider, delivery_id)

    def _too_large(self) -> WebhookVerdict:
        return WebhookVerdict(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"webhook body larger than {self.limits.max_body} bytes (raise webhook.max_body if pushes are this big)",
        )

    def _authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        """The provider whose signature header is present and valid; the first one found decides."""
        if "x-hub-signature-256" in headers:
            self._check_hmac(headers["x-hub-signature-256"], body, "X-Hub-Signature-256")
            return GITHUB
        if "x-gitlab-token" in headers:
            given = hashlib.sha256(headers["x-gitlab-token"].encode("utf-8", "replace")).digest()
            # Digests have one length, so not even the secret's length leaks through timing.
            if not hmac.compare_digest(given, self._token_digest):
                raise _Rejected(HTTPStatus.UNAUTHORIZED, "X-Gitlab-Token does not match the webhook secret")
            return GITLAB
        if "x-signature-256" in headers:
            self._check_hmac(headers["x-signature-256"], body, "X-Signature-256")
            return GENERIC
        raise _Rejected(
            HTTPStatus.UNAUTHORIZED,
            "unsigned delivery: send X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab) or "
            "X-Signature-256: sha256=<hex HMAC-SHA256 of the body> (generic)",
        )

    def _check_hmac(self, header: str, body: bytes, name: str) -> None:
        match = _SIGNATURE.fullmatch(header.strip())
        if match is None:
            raise _Rejected(HTTPStatus.UNAUTHORIZED, f"{name} must be sha256=<64 hex digits>")
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), match.group(1).lower().encode()):
            raise _Rejected(HTTPStatus.UNAUTHORIZED, f"{name} does not match the body signed with the webhook secret")

    def _decide(self, provider: str, delivery_id: str, headers: Mapping[str, str], body: bytes) -> WebhookVerdict:
        def ignored(message: str) -> WebhookVerdict:
            return WebhookVerdict(HTTPStatus.OK, message, provider, delivery_id)

        if provider == GITHUB:
            event = _event(headers, "X-GitHub-Event")
            if event == "ping":
                return ignored("ping received: the webhook is set up")
            if event != "push":
                return ignored(f"GitHub event {event!r} is not a push; nothing to do")
        elif provider == GITLAB:
            event = _event(headers, "X-Gitlab-Event")
            if event != "Push Hook":
                return ignored(f"GitLab event {event!r} is not a Push Hook; nothing to do")
        payload = _json_object(body, headers.get("content-type", ""))
        ref = payload.get("ref")
        if not isinstance(ref, str) or not ref:
            raise _Rejected(HTTPStatus.BAD_REQUEST, "the payload has no 'ref' (like refs/heads/main)")
        if not ref.startswith(_BRANCH_PREFIX):
            return ignored(f"{ref} is not a branch; nothing to do")
        branch = ref.removeprefix(_BRANCH_PREFIX)
        if branch != self.branch:
            return ignored(f"push to branch {branch!r} ignored: this daemon follows {self.branch!r}")
        sha = _pushed_sha(provider, payload)
        return WebhookVerdict(
            HTTPStatus.ACCEPTED, f"push to {branch!r} accepted; reconciling", provider, delivery_id, branch, sha
        )


def _event(headers: Mapping[str, str], name: str) -> str:
    event = headers.get(name.lower(), "").strip()
    if not event:
        raise _Rejected(HTTPStatus.BAD_REQUEST, f"missing {name} header")
    return event


def _delivery_id(provider: str, headers: Mapping[str, str]) -> str:
    # GitLab's Idempotency-Key stays the same across retries of one event; older GitLab only has the UUID.
    names = {
        GITHUB: ("x-github-delivery",),
        GITLAB: ("idempotency-key", "x-gitlab-event-uuid"),
        GENERIC: ("x-delivery-id",),
    }[provider]
    value = next((headers[n].strip() for n in names if headers.get(n, "").strip()), "")
    if not value:
        raise _Rejected(HTTPStatus.BAD_REQUEST, f"missing delivery id header ({' or '.join(names)})")
    if _DELIVERY_ID.fullmatch(value) is None:
        raise _Rejected(HTTPStatus.BAD_REQUEST, "the delivery id must be 1-128 printable ASCII characters")
    return value


def _json_object(body: bytes, content_type: str) -> dict[str, Any]:
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        raise _Rejected(
            HTTPStatus.BAD_REQUEST, "form-encoded payload: set the webhook's content type to application/json"
        )
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _Rejected(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise _Rejected(HTTPStatus.BAD_REQUEST, "the body is not a JSON object")
    return payload


def _pushed_sha(provider: str, payload: Mapping[str, Any]) -> str:
    """The new tip; "" for a branch deletion (all-zero SHA, or GitLab's null checkout_sha)."""
    keys = ("checkout_sha", "after") if provider == GITLAB else ("after",)
    value = next((payload[k] for k in keys if payload.get(k) is not None), None)
    if value is None:
        if provider == GENERIC:  # optional there: a script may only say "this branch moved"
            return ""
        raise _Rejected(HTTPStatus.BAD_REQUEST, f"the payload has no {' or '.join(repr(k) for k in keys)} SHA")
    if not isinstance(value, str) or _SHA.fullmatch(value) is None:
        raise _Rejected(HTTPStatus.BAD_REQUEST, "the pushed SHA is not a 40- or 64-digit lowercase hex object name")
    return "" if not value.strip("0") else value


# ---------------------------------------------------------------------- aiohttp


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def webhook_handler(verifier: WebhookVerifier, on_push: Callable[[PushEvent], None]) -> Handler:
    """The aiohttp handler for `POST /hooks/git`; `on_push` runs on the event loop for accepted pushes only."""

    async def handle(request: web.Request) -> web.StreamResponse:
        verdict = verifier.admit(request.content_length)
        if verdict is None:
            try:
                async with asyncio.timeout(verifier.limits.read_timeout):
                    body = await _read_at_most(request.content, verifier.limits.max_body + 1)
            except TimeoutError:
                verdict = WebhookVerdict(HTTPStatus.REQUEST_TIMEOUT, "the body did not arrive in time")
            else:
                verdict = verifier.check(request.headers, body)
        _log(verdict, request.remote or "")
        if verdict.push is not None:
            on_push(verdict.push)
        return _respond(verdict)

    return handle


async def _read_at_most(content: StreamReader, limit: int) -> bytes:
    """The body, or its first `limit` bytes: never more is buffered, whatever Content-Length claims."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _respond(verdict: WebhookVerdict) -> web.Response:
    outcome = "accepted" if verdict.accepted else "ignored" if verdict.status == HTTPStatus.OK else "rejected"
    payload = {"status": outcome, "message": verdict.message}
    if verdict.delivery_id:
        payload["delivery"] = verdict.delivery_id
    headers = {"Retry-After": str(math.ceil(verdict.retry_after))} if verdict.retry_after else None
    return web.json_response(payload, status=verdict.status, headers=headers)


def _log(verdict: WebhookVerdict, remote: str) -> None:
    fields = {
        "status": verdict.status,
        "provider": verdict.provider,
        "delivery": verdict.delivery_id,
        "reason": verdict.message,
        "remote": remote,
    }
    if verdict.accepted:
        log.info("webhook.accepted", branch=verdict.branch, sha=verdict.sha[:12], **fields)
    elif verdict.status == HTTPStatus.OK:
        log.info("webhook.ignored", **fields)
    elif verdict.status == HTTPStatus.TOO_MANY_REQUESTS:
        log.info("webhook.rate_limited", **fields)  # a flood must not flood the log at warning level too
    else:
        log.warning("webhook.rejected", **fields)
