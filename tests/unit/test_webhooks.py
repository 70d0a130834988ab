"""Push webhooks: each provider's real payload shape and signature header, and every way a delivery is refused.

The verifier is tested with a fake clock; the aiohttp handler on a real socket on 127.0.0.1, where a refused
delivery must never reach `on_push`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from reconciler.api.webhooks import (
    WEBHOOK_PATH,
    DeliveryLog,
    PushEvent,
    WebhookLimits,
    WebhookVerifier,
    webhook_handler,
)
from reconciler.redact import SecretFileError

SECRET = b"5f1c0e3a9b7d4c2e8a6f0b1d3c5e7a9f"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
BEFORE = "0000000000000000000000000000000000000000"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(clock: Clock) -> WebhookVerifier:
    return WebhookVerifier(SECRET, "main", clock)


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def github_push(ref: str = "refs/heads/main", after: str = SHA) -> dict[str, Any]:
    """The shape of GitHub's `push` event payload (trimmed, same keys and nesting)."""
    return {
        "ref": ref,
        "before": "9049f1265b7d61be4a8904a9a27120d2064dab3b",
        "after": after,
        "repository": {
            "id": 35129377,
            "name": "gateway-config",
            "full_name": "acme/gateway-config",
            "private": True,
            "default_branch": "main",
            "clone_url": "https://github.com/acme/gateway-config.git",
        },
        "pusher": {"name": "octocat", "email": "octocat@example.test"},
        "sender": {"login": "octocat", "id": 583231, "type": "User"},
        "created": False,
        "deleted": after == BEFORE,
        "forced": False,
        "base_ref": None,
        "compare": "https://github.com/acme/gateway-config/compare/9049f1265b7d...6113728f27ae",
        "commits": [
            {
                "id": after,
                "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
                "distinct": True,
                "message": "route /checkout to v2",
                "timestamp": "2024-05-01T10:00:00+02:00",
                "author": {"name": "Octo Cat", "email": "octocat@example.test", "username": "octocat"},
                "added": [],
                "removed": [],
                "modified": ["routes/shop.yaml"],
            }
        ],
        "head_commit": None,
    }


def github_headers(
    body: bytes, event: str = "push", delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": sign(body),
    }


def gitlab_push(ref: str = "refs/heads/main", checkout_sha: str | None = SHA) -> dict[str, Any]:
    """The shape of GitLab's Push Hook payload (trimmed, same keys and nesting)."""
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": checkout_sha or BEFORE,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": checkout_sha,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "gateway-config",
            "path_with_namespace": "acme/gateway-config",
            "default_branch": "main",
            "git_http_url": "https://gitlab.example.test/acme/gateway-config.git",
        },
        "commits": [
            {
                "id": SHA,
                "message": "route /checkout to v2\n",
                "title": "route /checkout to v2",
                "timestamp": "2024-05-01T10:00:00+02:00",
                "author": {"name": "John Smith", "email": "jsmith@example.test"},
                "added": [],
                "modified": ["routes/shop.yaml"],
                "removed": [],
            }
        ],
        "total_commits_count": 1,
        "repository": {"name": "gateway-config", "homepage": "https://gitlab.example.test/acme/gateway-config"},
    }


def gitlab_headers(
    token: str = SECRET.decode(), event: str = "Push Hook", uuid: str = "3c5a3f3d-7d3a-4f2b-a7a5-2a8a1c0f9a01"
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.5.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": uuid,
        "X-Gitlab-Webhook-UUID": "8b0f1f4e-1d2a-4c55-9f41-4b7a5c8f3f10",
        "X-Gitlab-Instance": "https://gitlab.example.test",
    }


def generic(payload: dict[str, Any], delivery: str = "deploy-42") -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return {"X-Signature-256": sign(body), "X-Delivery-Id": delivery}, body


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# ---------------------------------------------------------------------- GitHub


def test_github_push_to_the_followed_branch_is_accepted(verifier: WebhookVerifier) -> None:
    body = encode(github_push())
    verdict = verifier.verify(github_headers(body), body)
    assert verdict.status == 202, verdict.message
    assert verdict.push == PushEvent("github", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "main", SHA)


def test_github_headers_are_case_insensitive(verifier: WebhookVerifier) -> None:
    body = encode(github_push())
    headers = {k.lower(): v for k, v in github_headers(body).items()}
    assert verifier.verify(headers, body).status == 202


def test_github_ping_is_answered_and_ignored(verifier: WebhookVerifier) -> None:
    body = encode({"zen": "Design for failure.", "hook_id": 292430182, "hook": {"type": "Repository"}})
    verdict = verifier.verify(github_headers(body, event="ping"), body)
    assert (verdict.status, verdict.push) == (200, None)
    assert "ping" in verdict.message


@pytest.mark.parametrize(
    ("payload", "event", "says"),
    [
        (github_push(ref="refs/heads/feature/x"), "push", "'feature/x' ignored"),
        (github_push(ref="refs/tags/v1.2.0"), "push", "not a branch"),
        ({"action": "opened", "issue": {"number": 1}}, "issues", "not a push"),
    ],
)
def test_github_pushes_elsewhere_and_other_events_are_ignored(
    verifier: WebhookVerifier, payload: dict[str, Any], event: str, says: str
) -> None:
    body = encode(payload)
    verdict = verifier.verify(github_headers(body, event=event), body)
    assert (verdict.status, verdict.push) == (200, None)
    assert says in verdict.message


def test_github_branch_deletion_is_accepted_without_a_sha(verifier: WebhookVerifier) -> None:
    body = encode(github_push(after=BEFORE))
    verdict = verifier.verify(github_headers(body), body)
    assert verdict.status == 202
    assert verdict.sha == ""


@pytest.mark.parametrize(
    "signature",
    [
        "sha256=" + "0" * 64,  # well-formed, wrong
        sign(b"another body"),  # a real signature of something else
        sign(encode(github_push()), secret=b"not-the-secret-but-long-enough"),
        "sha1=2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        "sha256=abc",
        "",
    ],
)
def test_github_wrong_signatures_are_401(verifier: WebhookVerifier, signature: str) -> None:
    body = encode(github_push())
    headers = {**github_headers(body), "X-Hub-Signature-256": signature}
    verdict = verifier.verify(headers, body)
    assert (verdict.status, verdict.push) == (401, None)


def test_unsigned_deliveries_are_401_even_with_the_legacy_sha1_header(verifier: WebhookVerifier) -> None:
    body = encode(github_push())
    headers = {k: v for k, v in github_headers(body).items() if k != "X-Hub-Signature-256"}
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(SECRET, body, hashlib.sha1).hexdigest()
    verdict = verifier.verify(headers, body)
    assert verdict.status == 401
    assert "unsigned" in verdict.message


def test_a_signature_is_checked_over_the_raw_bytes(verifier: WebhookVerifier) -> None:
    body = encode(github_push())
    signed = github_headers(body)
    reformatted = json.dumps(github_push(), indent=2).encode()  # same JSON, other bytes
    assert verifier.verify({**signed, "X-GitHub-Delivery": "other"}, reformatted).status == 401


@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        (b"{not json", {}, "not JSON"),
        (b"\xff\xfe", {}, "not JSON"),
        (b"[1, 2]", {}, "not a JSON object"),
        (encode({"after": SHA}), {}, "no 'ref'"),
        (encode({"ref": 7, "after": SHA}), {}, "no 'ref'"),
        (encode(github_push(after="not-a-sha")), {}, "not a 40- or 64-digit"),
        (encode({"ref": "refs/heads/main"}), {}, "no 'after'"),
        (b"payload=%7B%7D", {"Content-Type": "application/x-www-form-urlencoded"}, "application/json"),
        (encode(github_push()), {"X-GitHub-Delivery": ""}, "missing delivery id"),
        (encode(github_push()), {"X-GitHub-Delivery": "id with spaces"}, "printable ASCII"),
        (encode(github_push()), {"X-GitHub-Event": ""}, "missing X-GitHub-Event"),
    ],
)
def test_malformed_signed_deliveries_are_400(
    verifier: WebhookVerifier, body: bytes, headers: dict[str, str], says: str
) -> None:
    verdict = verifier.verify({**github_headers(body), **headers}, body)
    assert (verdict.status, verdict.push) == (400, None)
    assert says in verdict.message


# ---------------------------------------------------------------------- GitLab


def test_gitlab_push_hook_is_accepted_with_checkout_sha(verifier: WebhookVerifier) -> None:
    body = encode(gitlab_push())
    verdict = verifier.verify(gitlab_headers(), body)
    assert verdict.status == 202, verdict.message
    assert verdict.push == PushEvent("gitlab", "3c5a3f3d-7d3a-4f2b-a7a5-2a8a1c0f9a01", "main", SHA)


def test_gitlab_branch_deletion_has_a_null_checkout_sha(verifier: WebhookVerifier) -> None:
    verdict = verifier.verify(gitlab_headers(), encode(gitlab_push(checkout_sha=None)))
    assert (verdict.status, verdict.sha) == (202, "")


@pytest.mark.parametrize("token", ["wrong-token-of-some-length", SECRET.decode()[:-1], SECRET.decode() + "x", ""])
def test_gitlab_wrong_token_is_401(verifier: WebhookVerifier, token: str) -> None:
    verdict = verifier.verify(gitlab_headers(token=token), encode(gitlab_push()))
    assert (verdict.status, verdict.push) == (401, None)


@pytest.mark.parametrize(
    ("payload", "event", "status"),
    [
        (gitlab_push(ref="refs/heads/develop"), "Push Hook", 200),
        (gitlab_push(ref="refs/tags/v1"), "Tag Push Hook", 200),
        ({"object_kind": "merge_request"}, "Merge Request Hook", 200),
        (gitlab_push(), "", 400),
    ],
)
def test_gitlab_other_events_and_branches(
    verifier: WebhookVerifier, payload: dict[str, Any], event: str, status: int
) -> None:
    verdict = verifier.verify(gitlab_headers(event=event), encode(payload))
    assert (verdict.status, verdict.push) == (status, None)


def test_gitlab_retries_share_the_idempotency_key(verifier: WebhookVerifier) -> None:
    body = encode(gitlab_push())
    first = {**gitlab_headers(uuid="uuid-1"), "Idempotency-Key": "key-1"}
    retry = {**gitlab_headers(uuid="uuid-2"), "Idempotency-Key": "key-1"}
    assert verifier.verify(first, body).status == 202
    verdict = verifier.verify(retry, body)
    assert (verdict.status, verdict.delivery_id) == (409, "key-1")


# ---------------------------------------------------------------------- generic


def test_generic_hmac_push_is_accepted(verifier: WebhookVerifier) -> None:
    headers, body = generic({"ref": "refs/heads/main", "after": SHA})
    verdict = verifier.verify(headers, body)
    assert verdict.push == PushEvent("generic", "deploy-42", "main", SHA)


def test_generic_push_may_omit_the_sha(verifier: WebhookVerifier) -> None:
    headers, body = generic({"ref": "refs/heads/main"})
    verdict = verifier.verify(headers, body)
    assert (verdict.status, verdict.sha) == (202, "")


def test_generic_wrong_signature_is_401(verifier: WebhookVerifier) -> None:
    headers, body = generic({"ref": "refs/heads/main"})
    headers["X-Signature-256"] = sign(body, secret=b"an-attacker-guessed-this-one")
    assert verifier.verify(headers, body).status == 401


# ---------------------------------------------------------------------- replay, rate, size, secret


def test_a_replayed_delivery_is_409_until_it_expires(clock: Clock) -> None:
    verifier = WebhookVerifier(SECRET, "main", clock, WebhookLimits(dedupe_ttl=60.0))
    body = encode(github_push())
    assert verifier.verify(github_headers(body), body).status == 202
    clock.now += 59
    replay = verifier.verify(github_headers(body), body)
    assert (replay.status, replay.push) == (409, None)
    clock.now += 61  # the first delivery is forgotten 60 s after it was recorded
    assert verifier.verify(github_headers(body), body).status == 202


def test_a_replay_with_a_forged_signature_is_401_not_409(verifier: WebhookVerifier) -> None:
    body = encode(github_push())
    assert verifier.verify(github_headers(body), body).status == 202
    forged = {**github_headers(body), "X-Hub-Signature-256": "sha256=" + "1" * 64}
    assert verifier.verify(forged, body).status == 401


def test_the_delivery_log_is_bounded(clock: Clock) -> None:
    deliveries = DeliveryLog(capacity=3, ttl=3600, clock=clock)
    assert not any(deliveries.seen_before(f"d{i}") for i in range(5))
    assert len(deliveries) == 3
    assert not deliveries.seen_before("d0")  # the oldest were forgotten first
    assert deliveries.seen_before("d4")


def test_rate_limit_answers_429_then_recovers(clock: Clock) -> None:
    verifier = WebhookVerifier(SECRET, "main", clock, WebhookLimits(rate_per_second=0.5, burst=3))
    statuses = []
    for n in range(4):
        body = encode(github_push())
        statuses.append(verifier.verify(github_headers(body, delivery=f"d{n}"), body).status)
    assert statuses == [202, 202, 202, 429]
    limited = verifier.verify(github_headers(body, delivery="d9"), body)
    assert limited.retry_after == pytest.approx(2.0)
    clock.now += 2.0
    assert verifier.verify(github_headers(body, delivery="d9"), body).status == 202


def test_rate_limit_counts_unauthenticated_requests_too(clock: Clock) -> None:
    verifier = WebhookVerifier(SECRET, "main", clock, WebhookLimits(burst=2))
    for _ in range(2):
        assert verifier.verify({}, b"{}").status == 401
    body = encode(github_push())
    assert verifier.verify(github_headers(body), body).status == 429


def test_oversized_bodies_are_413_before_the_signature_is_checked(clock: Clock) -> None:
    verifier = WebhookVerifier(SECRET, "main", clock, WebhookLimits(max_body=1000))
    body = encode({**github_push(), "padding": "x" * 1000})
    verdict = verifier.verify(github_headers(body), body)
    assert (verdict.status, verdict.push) == (413, None)
    assert verifier.admit(1001) is not None and verifier.admit(1000) is None


def test_there_is_no_unauthenticated_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a webhook secret is required"):
        WebhookVerifier(b"", "main")
    with pytest.raises(ValueError, match="at least 16 characters"):
        WebhookVerifier(b"short", "main")
    with pytest.raises(SecretFileError, match="cannot read the webhook secret from"):
        WebhookVerifier.from_file(tmp_path / "missing", "main")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretFileError, match="is empty"):
        WebhookVerifier.from_file(tmp_path / "empty", "main")


def test_the_secret_is_read_from_a_file_without_its_newline(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    verifier = WebhookVerifier.from_file(tmp_path / "secret", "main")
    body = encode(github_push())
    assert verifier.verify(github_headers(body), body).status == 202
    assert SECRET.decode() not in repr(verifier)


# ---------------------------------------------------------------------- the aiohttp handler, on a real socket


class Pushes:
    def __init__(self) -> None:
        self.events: list[PushEvent] = []

    def __call__(self, event: PushEvent) -> None:
        self.events.append(event)


@pytest.fixture
def pushes() -> Pushes:
    return Pushes()


@pytest.fixture
def limits() -> WebhookLimits:
    return WebhookLimits(max_body=64 * 1024, burst=5, rate_per_second=0.001, read_timeout=0.5)


@pytest.fixture
async def client(pushes: Pushes, limits: WebhookLimits) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, webhook_handler(WebhookVerifier(SECRET, "main", limits=limits), pushes))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def test_handler_accepts_a_github_push_and_calls_on_push_once(
    client: TestClient[web.Request, web.Application], pushes: Pushes
) -> None:
    body = encode(github_push())
    response = await client.post(WEBHOOK_PATH, data=body, headers=github_headers(body))
    assert response.status == 202
    assert (await response.json())["status"] == "accepted"
    assert pushes.events == [PushEvent("github", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "main", SHA)]

    replay = await client.post(WEBHOOK_PATH, data=body, headers=github_headers(body))
    assert replay.status == 409
    assert len(pushes.events) == 1


async def test_handler_refuses_without_calling_on_push(
    client: TestClient[web.Request, web.Application], pushes: Pushes
) -> None:
    body = encode(gitlab_push())
    bad_token = await client.post(WEBHOOK_PATH, data=body, headers=gitlab_headers(token="x" * 32))
    other_branch = await client.post(WEBHOOK_PATH, data=encode(gitlab_push("refs/heads/dev")), headers=gitlab_headers())
    assert (bad_token.status, other_branch.status) == (401, 200)
    assert (await bad_token.json())["status"] == "rejected"
    assert (await other_branch.json())["status"] == "ignored"
    assert pushes.events == []


async def test_handler_answers_413_without_reading_a_declared_oversized_body(
    client: TestClient[web.Request, web.Application], pushes: Pushes, limits: WebhookLimits
) -> None:
    body = b"x" * (limits.max_body + 1)
    response = await client.post(WEBHOOK_PATH, data=body, headers=github_headers(body))
    assert response.status == 413
    assert pushes.events == []


async def test_handler_stops_reading_a_chunked_body_at_the_limit(
    client: TestClient[web.Request, web.Application], pushes: Pushes, limits: WebhookLimits
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 100 * limits.max_body:  # bounded: stops by itself if the server kept reading
            sent += 16 * 1024
            yield b"x" * (16 * 1024)

    response = await client.post(WEBHOOK_PATH, data=endless(), headers={"X-Hub-Signature-256": sign(b"")})
    assert response.status == 413
    assert sent < 100 * limits.max_body
    assert pushes.events == []


async def test_handler_rate_limits_with_retry_after(
    client: TestClient[web.Request, web.Application], pushes: Pushes, limits: WebhookLimits
) -> None:
    statuses = []
    for n in range(limits.burst + 1):
        body = encode(github_push())
        response = await client.post(WEBHOOK_PATH, data=body, headers=github_headers(body, delivery=f"d{n}"))
        statuses.append(response.status)
    assert statuses == [202] * limits.burst + [429]
    assert int(response.headers["Retry-After"]) >= 1
    assert len(pushes.events) == limits.burst


async def test_handler_cuts_off_a_slow_client(client: TestClient[web.Request, web.Application], pushes: Pushes) -> None:
    body = encode(github_push())
    headers = "".join(f"{k}: {v}\r\n" for k, v in github_headers(body).items())
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        head = f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
        writer.write(head.encode() + body[:10])  # then nothing: a slowloris
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
    assert status_line.split()[1] == b"408"
    assert pushes.events == []


async def test_handler_logs_never_contain_the_secret(client: TestClient[web.Request, web.Application]) -> None:
    body = encode(gitlab_push())
    with capture_logs() as logs:
        await client.post(WEBHOOK_PATH, data=body, headers=gitlab_headers())
        await client.post(WEBHOOK_PATH, data=body, headers=gitlab_headers(token=SECRET.decode() + "x"))
    assert [e["event"] for e in logs] == ["webhook.accepted", "webhook.rejected"]
    assert SECRET.decode() not in repr(logs)
