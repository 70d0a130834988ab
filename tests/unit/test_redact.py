"""Secrets hygiene: URL credentials, PEM private keys, well-known tokens and registered secrets are masked,
in plain text and in every value of a structlog event; the rest of the text is left alone."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog

from reconciler import redact
from reconciler.redact import (
    MASK,
    REDACTED,
    SecretFileError,
    SecretRedactor,
    read_secret_file,
    redact_text,
    redact_url,
    url_secrets,
)
from reconciler.source import git as source_git

PRIVATE_KEY = """-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIBkg4LVWM9nuwNSk3yXxDxSf3ZVQzuYTlhN1cp1V2cDmoAoGCCqGSM49
AwEHoUQDQgAE1bZbh6pI1w0hD6f4xX1sq1kJxR3m1yQ5bZbh6pI1w0hD6f4xX1sq
-----END EC PRIVATE KEY-----"""
OPENSSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIBwzCCAWqgAwIBAgIUW0z\n-----END CERTIFICATE-----"


def test_git_source_reuses_the_one_redact_url() -> None:
    assert source_git.redact_url is redact.redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@example.com/a.git", "https://example.com/a.git"),
        ("ssh://git@example.com/a.git", "ssh://example.com/a.git"),
        ("git@example.com:org/a.git", "git@example.com:org/a.git"),
        ("https://[::1", "https://[::1"),  # unparsable: the regex path still leaves it intact
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_url_secrets_are_the_long_userinfo_pieces_raw_and_decoded() -> None:
    assert url_secrets("https://deploy:tok%2Fen-123@host/x") == [
        "deploy:tok%2Fen-123",
        "deploy:tok/en-123",
        "tok%2Fen-123",
        "tok/en-123",
        "deploy",
    ]
    assert url_secrets("https://git@host/x") == []  # "git" is too short to be a secret, and too common


def test_private_key_blocks_are_masked_certificates_are_not() -> None:
    text = f"loaded key:\n{PRIVATE_KEY}\nand chain:\n{CERTIFICATE}\nand {OPENSSH_KEY} done"
    out = redact_text(text)
    assert "MHcCAQEE" not in out and "b3BlbnNzaC1rZXkt" not in out
    assert out.count("[redacted private key]") == 2
    assert CERTIFICATE in out
    assert out.endswith(" done")


def test_a_truncated_private_key_is_masked_to_the_end() -> None:
    out = redact_text("error: " + PRIVATE_KEY[:90])
    assert out == "error: [redacted private key]"


def test_a_private_key_escaped_inside_json_is_masked() -> None:
    out = redact_text(json.dumps({"key": PRIVATE_KEY}))
    assert "MHcCAQEE" not in out


@pytest.mark.parametrize(
    "token",
    [
        "ghp_" + "a1B2" * 9,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        "glpat-" + "x7Y8z9" * 4,
    ],
)
def test_well_known_token_formats_are_masked(token: str) -> None:
    assert redact_text(f"fetch failed for {token}: 403") == f"fetch failed for {MASK}: 403"


def test_bearer_credentials_and_url_userinfo_are_masked() -> None:
    out = redact_text("Authorization: Bearer abc.def-123 sent to https://x:y-secret@host/p")
    assert out == f"Authorization: Bearer {MASK} sent to https://host/p"


def test_registered_secrets_are_masked_longest_first() -> None:
    out = redact_text("a=supersecretvalue b=supersecret", ["supersecret", b"supersecretvalue", ""])
    assert out == f"a={MASK} b={MASK}"


def test_ordinary_text_is_left_alone() -> None:
    text = "revision 6113728f27ae applied to fleet edge (3 listeners); token file /etc/x/token"
    assert redact_text(text) == text


def test_redactor_masks_nested_values_and_sensitive_keys() -> None:
    redactor = SecretRedactor(["webhook-secret-0123456789"])
    redactor.add("short")  # too short to mask as a bare string without mangling logs
    event = {
        "event": "webhook.rejected",
        "detail": "got webhook-secret-0123456789 back",
        "nested": {"items": ["x webhook-secret-0123456789", PRIVATE_KEY], "password": "hunter2"},
        "raw": b"Bearer abcdef012345",
        "api_token": "anything",
        "X-Gitlab-Token": "anything",
        "error": ValueError("https://u:p4ssw0rd@host failed"),
        "count": 3,
        "note": "short stays",
    }
    out = redactor(None, "info", dict(event))
    assert out["detail"] == f"got {MASK} back"
    assert out["nested"] == {"items": [f"x {MASK}", "[redacted private key]"], "password": REDACTED}
    assert out["raw"] == f"Bearer {MASK}"
    assert out["api_token"] == REDACTED and out["X-Gitlab-Token"] == REDACTED
    assert out["error"] == "https://host failed"
    assert (out["count"], out["note"], out["event"]) == (3, "short stays", "webhook.rejected")


def test_read_secret_file_registers_the_secret_with_the_default_redactor(tmp_path: Path) -> None:
    secret = "f00dfeed" * 4
    (tmp_path / "s").write_text(f"  {secret}\n")
    assert read_secret_file(tmp_path / "s", "the test secret") == secret.encode()
    assert secret not in redact.default_redactor.redact(f"leaked {secret}")


def test_read_secret_file_refuses_bad_files_without_quoting_them(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("abc123")
    with pytest.raises(SecretFileError) as caught:
        read_secret_file(tmp_path / "short", "the test secret")
    assert "shorter than 16" in str(caught.value) and "abc123" not in str(caught.value)
    with pytest.raises(SecretFileError, match="cannot read the test secret from"):
        read_secret_file(tmp_path / "missing", "the test secret")


def test_a_structlog_pipeline_with_the_redactor_never_prints_the_secret() -> None:
    secret = "0123456789abcdef-secret"
    output = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(output),
        processors=[SecretRedactor([secret]), structlog.processors.JSONRenderer(sort_keys=True)],
    )
    logger.warning("source.unreachable", error=f"fatal: could not read from https://ci:{secret}@git.example/x")
    assert secret not in output.getvalue()
    assert json.loads(output.getvalue())["error"] == "fatal: could not read from https://git.example/x"
