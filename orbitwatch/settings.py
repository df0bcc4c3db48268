"""Typed, frozen settings: a TOML file plus ``ORBITWATCH_*`` environment variables (which win).

The wiring owns the whole: ``Settings`` gathers one section per package, each declared by the package that uses
it (``ingest.settings``: kafka, registry; ``processing.settings``; ``storage.settings``: storage, retention;
``alerting.settings``) and the wiring's own (daemon, query, web, below). Each part of the product is handed
only its own section. Nested fields use ``__`` in variable names: ``ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS=host:9092``.
Everything is validated at start-up; a bad value raises ``ConfigError`` naming the field.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alerting.settings import AlertingSettings
from ingest.settings import KafkaSettings, RegistrySettings
from orbitwatch.errors import ConfigError
from processing.settings import ProcessingSettings
from storage.settings import RetentionSettings, StorageSettings


class DaemonSettings(BaseModel):
    """The ingestion loop: batching, dead-letter limits, health and metrics endpoints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_messages: int = Field(4_000, ge=1, le=200_000)
    poll_timeout_ms: int = Field(500, ge=10, le=60_000)
    poll_top_up_ms: int | None = Field(
        50,
        ge=0,
        le=1_000,
        description="during a backlog, fill a batch with more polls waiting this long; null: one poll",
    )
    dlq_max_ratio: float = Field(0.5, gt=0.0, le=1.0, description="stop when a window's dead-letter ratio exceeds it")
    dlq_window_messages: int = Field(1_000, ge=10)
    dlq_max_consecutive: int = Field(500, ge=1)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(9464, ge=0, le=65535, description="Prometheus endpoint; null disables it")
    liveness_file: Path | None = Path("data/orbitwatch.alive")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class QuerySettings(BaseModel):
    """The daemon's query service: read-only SQL on consistent snapshots while the writer goes on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="serve queries over HTTP while the daemon runs")
    host: str = Field("127.0.0.1", description="listen address; keep it local unless a token is set")
    port: int = Field(9465, ge=0, le=65535, description="0 picks a free port (written to <db>.query.json)")
    token: SecretStr | None = Field(None, description="when set, clients send 'Authorization: Bearer <token>'")
    statement_timeout_s: float = Field(30.0, gt=0, le=3600, description="a query running longer is cancelled")
    max_result_rows: int = Field(1_000_000, ge=1, description="a larger result is refused, not truncated")
    max_result_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Arrow size limit of one result")
    max_concurrent: int = Field(2, ge=1, le=64, description="queries executing at once; others wait their turn")
    queue_timeout_s: float = Field(120.0, gt=0, description="how long a query waits for its turn before 'busy'")
    nice: int = Field(10, ge=0, le=19, description="scheduling niceness of query threads: ingestion comes first")
    backlog_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="while the daemon catches up on a backlog (full batches), queries run at most this share "
        "of the time, the rest waiting their turn; 1 disables the pacing",
    )
    request_timeout_s: int = Field(
        30,
        ge=1,
        le=3600,
        description="a connection without a complete request this long is closed: an idle keep-alive "
        "connection, or a client whose body stopped coming (whole seconds; a running query is not cut)",
    )
    max_connections: int = Field(
        64, ge=1, le=10_000, description="open HTTP connections at most; further clients wait to be accepted"
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="a larger request body is refused (413)"
    )

    @model_validator(mode="after")
    def _remote_needs_a_token(self) -> QuerySettings:
        if self.token is None and not _is_loopback(self.host):
            raise ValueError(
                f"query.host {self.host!r} is not a loopback address: set query.token (clients then send a bearer "
                "token) or listen on 127.0.0.1"
            )
        return self


def _is_loopback(host: str) -> bool:
    """True for "localhost", 127.0.0.0/8 and ::1 (a name or an empty host: not known to be local)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebSettings(BaseModel):
    """``orbitwatch web``: the operators' web view (a process of its own, reading through query services)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="listen address; beyond loopback a token is required")
    port: int = Field(9470, ge=0, le=65535, description="0 picks a free port (printed at start-up)")
    token: SecretStr | None = Field(
        None, description="when set, acknowledging and shelving from the pages needs it (pages stay readable)"
    )
    urls: list[str] = Field(
        default_factory=list,
        description="query services of the daemons to show (one per shard); empty: the daemon of storage.path, "
        "or its file read-only when no daemon runs",
    )
    service_token: SecretStr | None = Field(
        None, description="bearer token of the query services (default: query.token)"
    )
    poll_interval_s: float = Field(
        0.25, ge=0.05, le=10, description="how often each daemon's last commit is checked to push page updates"
    )
    max_live_clients: int = Field(16, ge=1, le=256, description="pages kept up to date at once (one thread each)")

    @field_validator("urls")
    @classmethod
    def _urls_are_http(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _remote_needs_a_token(self) -> WebSettings:
        if self.token is None and not _is_loopback(self.host):
            raise ValueError(
                f"web.host {self.host!r} is not a loopback address: set web.token (actions then need it) or "
                "listen on 127.0.0.1"
            )
        return self


class Settings(BaseSettings):
    """All orbitwatch settings."""

    model_config = SettingsConfigDict(
        env_prefix="ORBITWATCH_", env_nested_delimiter="__", env_parse_none_str="null", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    storage: StorageSettings = StorageSettings()
    daemon: DaemonSettings = DaemonSettings()
    processing: ProcessingSettings = ProcessingSettings()
    alerting: AlertingSettings = AlertingSettings()
    query: QuerySettings = QuerySettings()
    retention: RetentionSettings = RetentionSettings()
    web: WebSettings = WebSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables override the TOML file (passed as init values)."""
        return (env_settings, init_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), apply ``ORBITWATCH_*`` variables, validate; ConfigError names the field."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc


def _describe(exc: ValidationError, path: Path | None) -> str:
    source = f" (file {path}, or ORBITWATCH_* variables)" if path else " (ORBITWATCH_* variables)"
    lines = [f"invalid settings{source}:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        env = "ORBITWATCH_" + "__".join(str(part) for part in error["loc"]).upper()
        lines.append(f"  {field}: {error['msg']} (got {error.get('input')!r}; env {env})")
    return "\n".join(lines)


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as plain data with secrets masked, for ``check-config`` and logs."""
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    return dumped
