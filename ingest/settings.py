"""The ingest package's settings: where telemetry comes from (``[kafka]``) and how schema ids resolve (``[registry]``).

Sections of ``orbitwatch.settings.Settings``, validated at start-up by the wiring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

DEFAULT_CONTRACT_DIR = Path(__file__).resolve().parents[2] / "shared" / "contract"


class KafkaSettings(BaseModel):
    """Where the telemetry comes from and how to authenticate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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


class RegistrySettings(BaseModel):
    """Where schema ids are resolved: the contract's registry.json, optionally a registry URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contract_dir: Path = DEFAULT_CONTRACT_DIR
    url: str | None = Field(None, description="Confluent-compatible schema registry, e.g. http://host:8081")

    @field_validator("contract_dir")
    @classmethod
    def _has_registry_file(cls, value: Path) -> Path:
        if not (value / "registry.json").is_file():
            raise ValueError(f"{value} has no registry.json")
        return value
