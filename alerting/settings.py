"""The alerting package's settings (``[alerting]``): the rules file and the outbox's delivery retries."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class AlertingSettings(BaseModel):
    """Alert rules evaluated on the processed data, notified through an outbox (needs processing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules_file: Path | None = Field(None, description="YAML rules, hooks and routes; null: no alerting")
    external_url: str = Field("http://127.0.0.1", description="link to orbitwatch in notifications")
    max_attempts: int = Field(8, ge=1, le=100, description="delivery attempts before a notification fails")
    base_backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles up to max_backoff_s")
    max_backoff_s: float = Field(300.0, gt=0)
