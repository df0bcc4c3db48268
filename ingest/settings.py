"""Typed, frozen settings: a TOML file plus ``ORBITWATCH_*`` environment variables (which win).

Nested fields use ``__`` in variable names: ``ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS=host:9092``.
Everything is validated at start-up; a bad value raises ``ConfigError`` naming the field.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ingest.errors import ConfigError

DEFAULT_CONTRACT_DIR = Path(__file__).resolve().parents[2] / "shared" / "contract"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Where the telemetry comes from and how to authenticate."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated host:port list")
    topic: str = Field("rack-telemetry", min_length=1)
    group_id: str = Field("orbitwatch", min_length=1)
    client_id: str = "orbitwatch"
    static_partitions: list[int] | None = Field(
        None, description="read exactly these partitions with assign(), no consumer group coordination"
    )
    shard_index: int | None = Field(
        None, ge=0, description="with shard_count: own partitions p with p % count == index"
    )
    shard_count: int | None = Field(None, ge=1, description="number of daemons sharing the topic by static shards")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    session_timeout_ms: int = Field(10_000, ge=1_000, le=300_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=60_000)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    fetch_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_partition_fetch_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    @field_validator("bootstrap_servers")
    @classmethod
    def _hosts_have_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _one_kind_of_assignment(self) -> KafkaSettings:
        if (self.shard_index is None) != (self.shard_count is None):
            raise ValueError("shard_index and shard_count go together")
        if self.shard_index is not None and self.shard_count is not None:
            if self.shard_index >= self.shard_count:
                raise ValueError(f"shard_index {self.shard_index} must be below shard_count {self.shard_count}")
            if self.static_partitions is not None:
                raise ValueError("use either static_partitions or shard_index/shard_count, not both")
        return self

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password")
        return self

    def owns(self, partition: int) -> bool:
        """Whether this daemon's fixed assignment includes ``partition`` (always, under a consumer group)."""
        if self.static_partitions is not None:
            return partition in self.static_partitions
        if self.shard_index is not None and self.shard_count is not None:
            return partition % self.shard_count == self.shard_index
        return True

    def server_list(self) -> list[str]:
        """The bootstrap servers as a list."""
        return [s.strip() for s in self.bootstrap_servers.split(",")]


class RegistrySettings(_Section):
    """Where schema ids are resolved: the contract's registry.json, optionally a registry URL."""

    contract_dir: Path = DEFAULT_CONTRACT_DIR
    url: str | None = Field(None, description="Confluent-compatible schema registry, e.g. http://host:8081")

    @field_validator("contract_dir")
    @classmethod
    def _has_registry_file(cls, value: Path) -> Path:
        if not (value / "registry.json").is_file():
            raise ValueError(f"{value} has no registry.json")
        return value


class StorageSettings(_Section):
    """The DuckDB history file."""

    path: Path = Path("data/orbitwatch.duckdb")
    memory_limit: str = Field("512MB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$")
    threads: int | None = Field(
        None,
        ge=1,
        description="DuckDB worker threads; null: 1 while processing is enabled (the main thread's recompute "
        "needs the other core), else DuckDB's default (all cores)",
    )
    checkpoint_threshold: str = Field("256MB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$")
    compatibility_version: str = Field(
        "v1.5.0",
        pattern=r"^v\d+\.\d+\.\d+$|^latest$",
        description="DuckDB storage format of a new file: v1.5.0 lets DuckDB 1.5 tools (the duckdb CLI on PyPI) "
        "open it; 'latest' uses this DuckDB's own format, which only DuckDB 2 reads",
    )


class DaemonSettings(_Section):
    """The ingestion loop: batching, dead-letter limits, health and metrics endpoints."""

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


class ProcessingSettings(_Section):
    """Derived tables: per-minute rollups, gaps, health and usage, kept in the batch's transaction."""

    enabled: bool = Field(True, description="false stores raw rows only (the backbone), e.g. to measure its cost")
    now_refresh_s: float = Field(5.0, gt=0, description="how often fleet_health_now is re-judged while idle")
    orbit_period_s: float = Field(5760.0, gt=0, description="pass interval assumed until two passes were seen")
    pass_break_s: float = Field(120.0, gt=0, description="live silence that ends a ground pass")
    contact_tolerance_s: float = Field(300.0, ge=0, description="lateness after a predicted pass before stale")


class AlertingSettings(_Section):
    """Alert rules evaluated on the processed data, notified through an outbox (needs processing)."""

    rules_file: Path | None = Field(None, description="YAML rules, hooks and routes; null: no alerting")
    external_url: str = Field("http://127.0.0.1", description="link to orbitwatch in notifications")
    max_attempts: int = Field(8, ge=1, le=100, description="delivery attempts before a notification fails")
    base_backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles up to max_backoff_s")
    max_backoff_s: float = Field(300.0, gt=0)


class QuerySettings(_Section):
    """The daemon's query service: read-only SQL on consistent snapshots while the writer goes on."""

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


class RetentionSettings(_Section):
    """How long rows stay in DuckDB before they move to the Parquet archive (hive-partitioned by day)."""

    enabled: bool = Field(True, description="move old days to the archive while the daemon runs")
    raw_days: int = Field(7, ge=1, description="days of raw frames and GPU samples kept in DuckDB")
    rollup_days: int = Field(90, ge=1, description="days of minute rollups, gaps and health log kept in DuckDB")
    archive_dir: Path | None = Field(None, description="Parquet archive root; null: <db>.archive beside the file")
    interval_s: float = Field(600.0, gt=0, description="how often the daemon looks for days to archive")

    @model_validator(mode="after")
    def _rollups_outlive_raw(self) -> RetentionSettings:
        if self.rollup_days < self.raw_days:
            raise ValueError(f"rollup_days ({self.rollup_days}) must be >= raw_days ({self.raw_days})")
        return self


class WebSettings(_Section):
    """``orbitwatch web``: the operators' web view (a process of its own, reading through query services)."""

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
