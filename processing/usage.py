"""Accounting and fleet utilization: GPU-hours per tenant per hour, and fleet-wide rollups. Pure polars.

**GPU-hours for billing.** Each sample with a tenant is one GPU-second held by that tenant; idle samples
(NULL tenant) are not counted. Seconds without a sample (lost frames) are not billed: the figure is what
was observed, and it grows when late frames arrive; a late frame changes only its own hour here (no
counters are involved), so recomputing the hours of the newly stored frames is enough.
"""

from __future__ import annotations

import polars as pl

from processing.errors import FrameShapeError

SECONDS_PER_HOUR = 3600


def tenant_usage_hourly(samples: pl.DataFrame) -> pl.DataFrame:
    """Per ``(tenant, hour)``: ``gpu_seconds`` (samples), ``gpu_hours`` (samples / 3600, for display; sum
    ``gpu_seconds`` for exact bills), ``racks`` and ``gpus`` that served the tenant.

    ``samples`` are ``gpu_samples`` rows; ``hour`` is ``sampled_at`` truncated to the hour (UTC).
    """
    missing = {"rack_id", "node", "gpu", "sampled_at", "tenant"} - set(samples.columns)
    if missing:
        raise FrameShapeError(f"GPU samples lack columns {sorted(missing)}")
    return (
        samples.filter(pl.col("tenant").is_not_null())
        .group_by("tenant", pl.col("sampled_at").dt.truncate("1h").alias("hour"))
        .agg(
            pl.len().cast(pl.Int64).alias("gpu_seconds"),
            (pl.len() / SECONDS_PER_HOUR).alias("gpu_hours"),
            pl.col("rack_id").n_unique().cast(pl.Int64).alias("racks"),
            pl.struct("rack_id", "node", "gpu").n_unique().cast(pl.Int64).alias("gpus"),
        )
        .sort("tenant", "hour")
    )


def fleet_utilization(rack_rollups: pl.DataFrame) -> pl.DataFrame:
    """Fleet-wide figures per window, from ``processing.rollups.rack_rollups`` of one width.

    Output per ``window_start``: ``racks_reporting`` and ``gpus_reporting`` (with at least one sample),
    ``util_mean`` (over every GPU reading in the fleet, gaps unknown rather than idle), ``coverage``
    (rack frames present / expected, over the reporting racks), ``util_mean_covered``
    (``util_mean * coverage``, a lower bound), ``busy_gpu_s`` (GPU-seconds with a tenant) and
    ``capacity_gpu_s`` (reporting GPUs x window seconds). Racks that sent nothing in a window are not
    known here: compare ``racks_reporting`` with the fleet's size.
    """
    needed = {"window_start", "rack_id", "gpus", "frames", "expected_s", "util_mean", "util_readings", "busy_s"}
    missing = needed - set(rack_rollups.columns)
    if missing:
        raise FrameShapeError(f"rack rollups lack columns {sorted(missing)}")
    readings = pl.col("util_readings")
    return (
        rack_rollups.group_by("window_start")
        .agg(
            pl.col("rack_id").n_unique().cast(pl.Int64).alias("racks_reporting"),
            pl.col("gpus").sum().cast(pl.Int64).alias("gpus_reporting"),
            pl.when(readings.sum() > 0)
            .then((pl.col("util_mean") * readings).sum() / readings.sum())
            .alias("util_mean"),
            (pl.col("frames").sum() / pl.col("expected_s").sum()).alias("coverage"),
            pl.col("busy_s").sum().cast(pl.Int64).alias("busy_gpu_s"),
            (pl.col("gpus") * pl.col("expected_s")).sum().cast(pl.Int64).alias("capacity_gpu_s"),
        )
        .with_columns((pl.col("util_mean") * pl.col("coverage")).alias("util_mean_covered"))
        .sort("window_start")
    )
