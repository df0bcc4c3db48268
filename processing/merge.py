"""Fold new rows into stored windows without reading the stored rows back. Pure polars, no I/O.

A GPU window's rollup is mergeable: counts and sums add, maxima take the larger, the distinct XIDs
unite. Means are kept exact through their fixed-point sums (``processing.rollups.FIXED_POINT``): a stored
mean of ``n`` readings gives back its integer sum as ``round(mean * n * 2**20)`` exactly (the sum is below
2**53 and the mean carries a relative error of 2**-53, far below 1/2), so the merged mean is computed by
the very operations ``exact_mean`` uses and is bit-identical to the mean of all the rows at once.

Counter increments merge when the new rows of a window all come *after* its stored rows in
``(boot_epoch, frame_seq)`` order (a rack's frames newer than any stored for it, the live case): their
increments are computed against the stored window's last readings (``<counter>_last``) and add to the
stored increment. Frames that land before or among stored rows take the exact recompute instead
(``storage.derived``).
"""

from __future__ import annotations

import polars as pl

from processing.counters import increments_and_state
from processing.health import HealthThresholds
from processing.rollups import (
    FIXED_POINT,
    GPU_COUNTERS,
    GPU_INCREMENTS,
    GPU_KEY,
    GPU_METRICS,
    THROTTLE_REASONS,
    gpu_rollups,
)
from processing.windows import (
    GPU_WINDOW_KEY,
    TENANT_BOUNDS,
    TENANT_SCHEMA,
    WindowTables,
    lookback_rows,
    tenant_minutes,
    windows_of_gpu_minutes,
)

_ADDED = [
    "samples",
    *(f"{name}_readings" for name in GPU_METRICS),
    *GPU_INCREMENTS,
    "xid_count",
    *(f"throttled_s_{reason}" for reason in THROTTLE_REASONS),
    "busy_s",
]


def _fixed_sum(name: str, side: str) -> pl.Expr:
    """The integer fixed-point sum behind ``<name>_mean`` of one side of the join (0 without readings)."""
    mean, readings = pl.col(f"{name}_mean{side}"), pl.col(f"{name}_readings{side}").fill_null(0)
    return (mean * readings.cast(pl.Float64) * FIXED_POINT).round().cast(pl.Int64).fill_null(0)


def _united_xids() -> pl.Expr:
    """The stored and new XIDs united, sorted; the union only where both sides raised some (uniting
    every pair of lists cost 60% of the merge in a 5,000-rack batch, where nearly all are empty)."""
    stored, new = pl.col("xids"), pl.col("xids_new")
    united = pl.concat_list(stored, new).list.unique().list.sort()
    only_stored, only_new = new.list.len() == 0, stored.list.len() == 0
    return pl.when(only_stored).then(stored).when(only_new).then(new).otherwise(united).alias("xids")


def merge_gpu_windows(stored: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """GPU windows of ``stored`` (rollup columns and lookback state) with ``new``'s rollups folded in.

    ``new``: rollups of rows that all follow the stored rows of their window (see the module docstring),
    with their increments computed against the stored state. Windows on one side only pass through.
    Health columns are not carried: judge the result again.
    """
    columns = [c for c in new.columns if c not in ("state", "reasons")]
    new = new.select(columns)
    stored = stored.select(columns).cast(new.schema)
    both = stored.join(new, on=GPU_WINDOW_KEY, how="inner", suffix="_new")
    if both.is_empty():
        return pl.concat([stored, new])
    merged: list[pl.Expr] = [pl.col(c) + pl.col(f"{c}_new") for c in _ADDED]
    for name in GPU_METRICS:
        readings = pl.col(f"{name}_readings") + pl.col(f"{name}_readings_new")
        total = _fixed_sum(name, "") + _fixed_sum(name, "_new")
        merged.append(pl.when(readings > 0).then(total.cast(pl.Float64) / FIXED_POINT / readings).alias(f"{name}_mean"))
        merged.append(pl.max_horizontal(f"{name}_max", f"{name}_max_new").alias(f"{name}_max"))
    merged.append(_united_xids())
    merged.append(pl.col("row_remap_pending") | pl.col("row_remap_pending_new"))
    same_epoch = pl.col("last_epoch_new") == pl.col("last_epoch")
    for c in GPU_COUNTERS:
        last, stored_last = pl.col(f"{c}_last_new"), pl.col(f"{c}_last")
        merged.append(pl.when(last.is_not_null()).then(last).when(same_epoch).then(stored_last).alias(f"{c}_last"))
    merged += [pl.col("last_epoch_new").alias("last_epoch"), pl.col("last_seq_new").alias("last_seq")]
    folded = (
        both.with_columns(merged)
        .with_columns((pl.col("samples") / pl.col("expected_s")).alias("coverage"))
        .with_columns((pl.col("util_mean") * pl.col("coverage")).alias("util_mean_covered"))
        .select(columns)
    )
    alone = [stored.join(new, on=GPU_WINDOW_KEY, how="anti"), new.join(stored, on=GPU_WINDOW_KEY, how="anti")]
    return pl.concat([*alone, folded.cast(new.schema)])


def merge_tenant_minutes(stored: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Tenant usage per rack-minute with ``new``'s GPU-seconds added and its GPUs united."""
    key = ["rack_id", "window_start", "tenant"]
    if stored.is_empty():
        return new
    both = pl.concat([stored.select(list(TENANT_SCHEMA)), new.select(list(TENANT_SCHEMA))], how="vertical_relaxed")
    return (
        both.group_by(key)
        .agg(pl.col("gpu_seconds").sum(), pl.col("gpu_ids").explode().unique().sort())
        .cast(TENANT_SCHEMA)  # type: ignore[arg-type]
        .sort(key)
    )


def fold_windows(
    stored_gpu: pl.DataFrame,
    stored_tenants: pl.DataFrame,
    samples: pl.DataFrame,
    frames: pl.DataFrame,
    gpu_state: pl.DataFrame,
    rack_state: pl.DataFrame,
    thresholds: HealthThresholds | None = None,
) -> WindowTables:
    """The windows of ``samples`` (new GPU rows, all after the stored rows of their rack) folded into the
    stored GPU windows and tenant minutes of the same rack-minutes; equal to ``compute_windows`` over all
    the rows, without reading the stored samples.

    ``frames``: every raw rack frame of those rack-minutes (stored and new: a few hundred rows, read for the
    rack's own rollup). ``gpu_state``/``rack_state``: the stored windows of the ``HORIZON_MINUTES`` before
    (as for ``compute_windows``); the stored windows themselves give the readings the new increments
    start from.
    """
    lookback = [lookback_rows(s, GPU_KEY, GPU_COUNTERS) for s in (gpu_state, stored_gpu) if not s.is_empty()]
    incs, state = increments_and_state(
        samples, GPU_COUNTERS, GPU_KEY, pl.concat(lookback, how="vertical_relaxed") if lookback else None
    )
    new = gpu_rollups(incs, state=state, extra=TENANT_BOUNDS)
    tenants = merge_tenant_minutes(stored_tenants, tenant_minutes(samples, new))
    gpu = new.drop("_tenant_min", "_tenant_max")
    if not stored_gpu.is_empty():
        gpu = merge_gpu_windows(stored_gpu, gpu).sort(GPU_WINDOW_KEY)
    return windows_of_gpu_minutes(gpu, tenants, frames, rack_state, thresholds)
