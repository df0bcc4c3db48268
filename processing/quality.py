"""Physically impossible readings: which values are flagged, and which frames are rejected.

Decision (documented in the README): a frame whose *identity or time* is impossible is rejected whole and
dead-lettered, because it cannot be placed in history (negative ``frame_seq`` or ``boot_epoch``,
``sampled_at`` more than ``MAX_CLOCK_SKEW`` after the ground received it, or before ``EARLIEST_SAMPLE``).
A frame whose *readings* are impossible is kept: each impossible value is stored as NULL and a bit is set
in the row's ``invalid_mask``, so it is never read as a real reading and the rest of the frame survives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

MAX_CLOCK_SKEW = timedelta(minutes=5)
EARLIEST_SAMPLE = datetime(2000, 1, 1, tzinfo=UTC)

# Bit of each GPU reading in gpu_samples.invalid_mask: NaN/inf, or outside the physical range.
GPU_READING_LIMITS: dict[str, tuple[float, float]] = {
    "util_pct": (0.0, 100.0),
    "mem_used_mib": (0.0, float("inf")),
    "mem_total_mib": (0.0, float("inf")),
    "power_w": (0.0, 5_000.0),
    "temp_c": (-150.0, 200.0),
    "hbm_temp_c": (-150.0, 200.0),
    "sm_clock_mhz": (0.0, 10_000.0),
    "ecc_sbe": (0.0, float("inf")),
    "ecc_dbe": (0.0, float("inf")),
    "nvlink_errors": (0.0, float("inf")),
}
# Bit of each rack reading in rack_frames.invalid_mask.
RACK_READING_LIMITS: dict[str, tuple[float, float]] = {
    "bus_w": (0.0, 1_000_000.0),
    "solar_w": (0.0, 1_000_000.0),
    "battery_soc": (0.0, 1.0),
    "radiator_c": (-273.15, 500.0),
    "coolant_inlet_c": (-273.15, 500.0),
    "coolant_outlet_c": (-273.15, 500.0),
    "seu_count": (0.0, float("inf")),
    "dose_rate_mrad_h": (0.0, float("inf")),
}


def invalid_bit(limits: dict[str, tuple[float, float]], column: str) -> int:
    """The ``invalid_mask`` bit that stands for ``column``."""
    return 1 << list(limits).index(column)


def rejection_reason() -> pl.Expr:
    """Why a frame cannot be stored at all (null when it can), from frame-level columns."""
    sampled = pl.col("sampled_at")
    return (
        pl.when(pl.col("frame_seq") < 0)
        .then(pl.lit("impossible frame: negative frame_seq"))
        .when(pl.col("boot_epoch") < 0)
        .then(pl.lit("impossible frame: negative boot_epoch"))
        .when(sampled > pl.col("received_at") + MAX_CLOCK_SKEW)
        .then(pl.lit(f"impossible frame: sampled_at later than received + {MAX_CLOCK_SKEW}"))
        .when(sampled < EARLIEST_SAMPLE)
        .then(pl.lit(f"impossible frame: sampled_at before {EARLIEST_SAMPLE:%Y-%m-%d}"))
        .otherwise(pl.lit(None, pl.String))
    )


def _is_invalid(column: str, low: float, high: float) -> pl.Expr:
    value = pl.col(column).cast(pl.Float64)
    return value.is_not_null() & (value.is_nan() | (value < low) | (value > high))


def flag_invalid(frame: pl.DataFrame, limits: dict[str, tuple[float, float]]) -> pl.DataFrame:
    """Null out impossible readings and record them in an ``invalid_mask`` column."""
    checks = {name: _is_invalid(name, low, high) for name, (low, high) in limits.items()}
    mask = pl.sum_horizontal(
        [pl.when(check).then(invalid_bit(limits, name)).otherwise(0) for name, check in checks.items()]
    ).cast(pl.Int32)
    nulled = [pl.when(check).then(None).otherwise(pl.col(name)).alias(name) for name, check in checks.items()]
    return frame.with_columns(mask.alias("invalid_mask")).with_columns(nulled)
