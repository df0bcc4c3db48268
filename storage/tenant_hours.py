"""GPU-seconds and minutes per tenant, rack and hour (``tenant_hours``, a ``storage.hourly`` rollup of
``tenant_minutes``): what the saved query ``tenant-usage`` reads instead of a day of tenant-minutes.

A rack counts for a tenant's hour when its rows there add up to at least one minute (a tenant-minute row
has at least one GPU-second), which is ``count(DISTINCT rack_id)`` over the minutes; so ``tenant-usage``
answers exactly what it answered from ``tenant_minutes`` (``tests/test_hourly_rollups.py`` compares the two).
"""

from __future__ import annotations

import polars as pl

from storage.hourly import HOUR_OF_WINDOW, Rollup, hour_of
from storage.tables import TENANT_HOURS

_KEY = ("tenant", "rack_id")


def _terms(minutes: pl.DataFrame, sign: int) -> pl.DataFrame:
    """Tenant minutes as ``tenant_hours`` terms, counted ``sign`` times (-1: taken away)."""
    return minutes.select(
        *_KEY,
        hour_of("window_start"),
        pl.lit(sign, pl.Int64).alias("minutes"),
        pl.col("gpu_seconds").cast(pl.Int64) * sign,
    )


TENANT_HOURS_ROLLUP = Rollup(
    table=TENANT_HOURS,
    source="tenant_minutes",
    key=_KEY,
    accounted=(*_KEY, "window_start", "gpu_seconds"),
    roll_select=f"tenant, rack_id, {HOUR_OF_WINDOW} AS hour, count(*), sum(gpu_seconds)",
    terms=_terms,
    sums=(pl.col("minutes").sum(), pl.col("gpu_seconds").sum()),
)
