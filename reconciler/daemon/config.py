"""The daemon config file (YAML), decoded strictly with the same schema machinery as manifests."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler.diagnostics import has_errors
from reconciler.manifests.durations import Duration
from reconciler.manifests.schema import MISSING, Decoder
from reconciler.manifests.yamldoc import YamlError, load_documents


class ConfigError(Exception):
    """A sentence for the operator, naming file:line:column."""


@dataclass(frozen=True)
class RepoSettings:
    url: str
    branch: str = "main"
    path: str = "."
    poll_interval: Duration = field(default_factory=lambda: Duration.parse("30s"))


@dataclass(frozen=True)
class ListenSettings:
    listen: str


@dataclass(frozen=True)
class StateSettings:
    dir: str = "./state"


@dataclass(frozen=True)
class EnvoySettings:
    # Address that listeners bind when a Gateway server sets no `bind` (istiod: 0.0.0.0).
    bind_address: str = "0.0.0.0"


@dataclass(frozen=True)
class LogSettings:
    format: str = "auto"  # auto (console on a TTY, JSON otherwise) | json | console
    level: str = "info"


@dataclass(frozen=True)
class DaemonConfig:
    repo: RepoSettings
    xds: ListenSettings = field(default_factory=lambda: ListenSettings("127.0.0.1:18000"))
    api: ListenSettings = field(default_factory=lambda: ListenSettings("127.0.0.1:8080"))
    state: StateSettings = field(default_factory=StateSettings)
    envoy: EnvoySettings = field(default_factory=EnvoySettings)
    log: LogSettings = field(default_factory=LogSettings)

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
    # A relative state folder is relative to the config file, not to wherever the daemon was started.
    state_dir = (path.parent / config.state.dir).resolve()
    return replace(config, state=StateSettings(str(state_dir)))
