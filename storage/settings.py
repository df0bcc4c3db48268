"""The storage package's settings: the DuckDB file, and retention into the Parquet archive.

Sections of ``orbitwatch.settings.Settings`` (``[storage]`` and ``[retention]``), validated at start-up by the wiring.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

_SIZE = r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$"


class StorageSettings(BaseModel):
    """The DuckDB history file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Path("data/orbitwatch.duckdb")
    memory_limit: str = Field("512MB", pattern=_SIZE)
    threads: int | None = Field(
        None,
        ge=1,
        description="DuckDB worker threads; null: with processing enabled 1 while the daemon ingests (its own "
        "threads need the cores) and all cores while it is idle (orbitwatch.load_threads), else DuckDB's "
        "default (all cores)",
    )
    checkpoint_threshold: str = Field("256MB", pattern=_SIZE)
    compatibility_version: str = Field(
        "v1.5.0",
        pattern=r"^v\d+\.\d+\.\d+$|^latest$",
        description="DuckDB storage format of a new file: v1.5.0 lets DuckDB 1.5 tools (the duckdb CLI on PyPI) "
        "open it; 'latest' uses this DuckDB's own format, which only DuckDB 2 reads",
    )


class RetentionSettings(BaseModel):
    """How long rows stay in DuckDB before they move to the Parquet archive (hive-partitioned by day)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
