"""The processing package's settings (``[processing]``): derived tables and the ground-pass contact model.

The contact model's defaults are ``processing.passes.DEFAULT_CONTACT``'s, declared there once.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from processing.passes import DEFAULT_CONTACT, ContactModel


class ProcessingSettings(BaseModel):
    """Derived tables: per-minute rollups, gaps, health and usage, kept in the batch's transaction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="false stores raw rows only (the backbone), e.g. to measure its cost")
    now_refresh_s: float = Field(5.0, gt=0, description="how often fleet_health_now is re-judged while idle")
    open_minute_hold_s: float = Field(
        5.0,
        ge=0,
        description="how long the open minute of a rack streaming in order stays in memory before its windows "
        "are written (queries see it that much later; written at once when idle or stopping); 0: every batch",
    )
    orbit_period_s: float = Field(
        DEFAULT_CONTACT.orbit_period_s, gt=0, description="pass interval assumed until two passes were seen"
    )
    pass_break_s: float = Field(DEFAULT_CONTACT.pass_break_s, gt=0, description="live silence that ends a ground pass")
    contact_tolerance_s: float = Field(
        DEFAULT_CONTACT.tolerance_s, ge=0, description="lateness after a predicted pass before stale"
    )

    def contact(self) -> ContactModel:
        """The contact model these settings describe."""
        return ContactModel(self.orbit_period_s, self.pass_break_s, self.contact_tolerance_s)
