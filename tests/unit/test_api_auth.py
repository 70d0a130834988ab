"""Bearer-token auth for the API: scopes, open probe paths, challenges, token files, and the client side.

The middleware runs in a real aiohttp server on 127.0.0.1 with the daemon API's routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from reconciler.api.auth import (
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    Scope,
    TokenFile,
    TokenSet,
    auth_middleware,
    authorization_header,
    load_tokens,
    required_scope,
    resolve_client_token,
)
from reconciler.api.webhooks import WEBHOOK_PATH
from reconciler.redact import SecretFileError

READ_TOKEN = "r3ad-0nly-7f9c2b1e4d6a8f0c"
CONTROL_TOKEN = "c0ntr0l-5e3a1c9b7d2f4e6a"

Client = TestClient[web.Request, web.Application]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def tokens(tmp_path: Path) -> TokenSet:
    return load_tokens(
        [
            TokenFile(write(tmp_path / "dashboard", READ_TOKEN + "\n"), Scope.READ),
            TokenFile(write(tmp_path / "ci", CONTROL_TOKEN), Scope.CONTROL, name="ci-pipeline"),
        ]
    )


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path})


@pytest.fixture
async def client(tokens: TokenSet) -> AsyncIterator[Client]:
    app = web.Application(middlewares=[auth_middleware(tokens)])
    app.add_routes(
        [
            web.get("/healthz", _ok),
            web.get("/readyz", _ok),
            web.get("/api/v1/status", _ok),
            web.get("/api/v1/fleets/{name}/history", _ok),
            web.post("/api/v1/reconcile", _ok),
            web.post(WEBHOOK_PATH, _ok),
        ]
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_are_open(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200


async def test_the_webhook_path_is_left_to_its_own_signature_check(client: Client) -> None:
    assert (await client.post(WEBHOOK_PATH)).status == 200


async def test_status_needs_a_token(client: Client) -> None:
    response = await client.get("/api/v1/status")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="gateway-reconciler"'
    assert "needs a bearer token" in (await response.json())["error"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-the-token-at-all-1234",
        f"Bearer {READ_TOKEN}x",
        f"Bearer {READ_TOKEN[:-1]}",
        f"Basic {READ_TOKEN}",
        READ_TOKEN,
        "Bearer",
    ],
)
async def test_invalid_credentials_are_401(client: Client, authorization: str) -> None:
    response = await client.get("/api/v1/status", headers={"Authorization": authorization})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="gateway-reconciler"')


async def test_a_wrong_bearer_token_is_named_invalid_token(client: Client) -> None:
    response = await client.get("/api/v1/status", headers=bearer("not-the-token-at-all-1234"))
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("token", [READ_TOKEN, CONTROL_TOKEN])
async def test_read_and_control_tokens_read(client: Client, token: str) -> None:
    for path in ("/api/v1/status", "/api/v1/fleets/edge/history"):
        response = await client.get(path, headers=bearer(token))
        assert response.status == 200, path


async def test_the_bearer_scheme_is_case_insensitive(client: Client) -> None:
    response = await client.get("/api/v1/status", headers={"Authorization": f"bearer  {READ_TOKEN} "})
    assert response.status == 200


async def test_control_needs_the_control_scope(client: Client) -> None:
    forbidden = await client.post("/api/v1/reconcile", headers=bearer(READ_TOKEN))
    assert forbidden.status == 403
    assert forbidden.headers["WWW-Authenticate"] == (
        'Bearer realm="gateway-reconciler", error="insufficient_scope", scope="control"'
    )
    allowed = await client.post("/api/v1/reconcile", headers=bearer(CONTROL_TOKEN))
    assert allowed.status == 200


async def test_unknown_paths_do_not_reveal_themselves_without_a_token(client: Client) -> None:
    assert (await client.get("/api/v1/secrets")).status == 401
    assert (await client.get("/api/v1/secrets", headers=bearer(READ_TOKEN))).status == 404


@pytest.mark.parametrize(
    "target",
    ["/healthz/../api/v1/status", "//api/v1/status", "/healthz/..%2Fapi/v1/status", "/api/v1/status/", "/HEALTHZ"],
)
async def test_path_tricks_never_reach_a_protected_handler_without_a_token(client: Client, target: str) -> None:
    # Sent raw: a client library would normalise the path before the server sees it.
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
    status = int(status_line.split()[1])
    assert status in (401, 404), (target, status_line)


async def test_tokens_never_reach_the_logs(client: Client) -> None:
    with capture_logs() as logs:
        await client.get("/api/v1/status", headers=bearer(READ_TOKEN + "-wrong"))
        await client.post("/api/v1/reconcile", headers=bearer(READ_TOKEN))
        await client.post("/api/v1/reconcile", headers=bearer(CONTROL_TOKEN))
    assert [e["event"] for e in logs] == ["api.unauthenticated", "api.forbidden", "api.control"]
    assert [e.get("client") for e in logs] == [None, "dashboard", "ci-pipeline"]
    text = repr(logs)
    assert READ_TOKEN not in text and CONTROL_TOKEN not in text


def test_required_scope() -> None:
    assert required_scope("GET", "/healthz") is None
    assert required_scope("GET", "/api/v1/status") is Scope.READ
    assert required_scope("HEAD", "/metrics") is Scope.READ
    assert required_scope("POST", "/api/v1/reconcile") is Scope.CONTROL
    assert required_scope("DELETE", "/api/v1/anything") is Scope.CONTROL


# ---------------------------------------------------------------------- token files


def test_token_files_must_be_usable(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError, match="cannot read the API token from"):
        load_tokens([TokenFile(tmp_path / "missing", Scope.READ)])
    with pytest.raises(SecretFileError, match="shorter than 16"):
        load_tokens([TokenFile(write(tmp_path / "short", "abc\n"), Scope.READ)])
    with pytest.raises(SecretFileError, match="printable ASCII without spaces"):
        load_tokens([TokenFile(write(tmp_path / "spaces", "two words in a token file"), Scope.READ)])
    with pytest.raises(ValueError, match="at least one token"):
        load_tokens([])
    same = write(tmp_path / "a", READ_TOKEN)
    with pytest.raises(ValueError, match="hold the same token"):
        load_tokens([TokenFile(same, Scope.READ), TokenFile(write(tmp_path / "b", READ_TOKEN), Scope.CONTROL)])


def test_errors_and_reprs_never_contain_the_token(tmp_path: Path, tokens: TokenSet) -> None:
    with pytest.raises(SecretFileError) as caught:
        load_tokens([TokenFile(write(tmp_path / "spaces", "sp ace " + READ_TOKEN), Scope.READ)])
    assert READ_TOKEN not in str(caught.value)
    assert READ_TOKEN not in repr(tokens.authenticate(READ_TOKEN))
    assert tokens.names == ["dashboard", "ci-pipeline"]


# ---------------------------------------------------------------------- client side


def test_client_token_precedence(tmp_path: Path) -> None:
    flag = write(tmp_path / "flag", "from-flag-file\n")
    env_file = write(tmp_path / "env-file", "from-env-file")
    home = tmp_path / "home"
    (home / ".config" / "gateway-reconciler").mkdir(parents=True)
    write(home / ".config" / "gateway-reconciler" / "token", "from-default-file")
    env = {TOKEN_ENV: "from-env", TOKEN_FILE_ENV: str(env_file), "HOME": str(home)}

    assert resolve_client_token(flag, env) == "from-flag-file"
    assert resolve_client_token(None, env) == "from-env"
    assert resolve_client_token(None, {**env, TOKEN_ENV: ""}) == "from-env-file"
    assert resolve_client_token(None, {"HOME": str(home)}) == "from-default-file"
    assert resolve_client_token(None, {"HOME": str(tmp_path / "nobody")}) is None
    assert resolve_client_token(None, {}) is None


def test_xdg_config_home_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "gateway-reconciler").mkdir()
    write(tmp_path / "gateway-reconciler" / "token", "from-xdg")
    assert resolve_client_token(None, {"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/nonexistent"}) == "from-xdg"


def test_a_named_token_file_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError, match="--token-file"):
        resolve_client_token(tmp_path / "missing", {TOKEN_ENV: "ignored"})
    with pytest.raises(SecretFileError, match=TOKEN_FILE_ENV):
        resolve_client_token(None, {TOKEN_FILE_ENV: str(tmp_path / "missing")})


def test_authorization_header() -> None:
    assert authorization_header("abc") == {"Authorization": "Bearer abc"}
    assert authorization_header(None) == {}
