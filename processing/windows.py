"""The derived per-minute windows of a set of racks' minutes: rollups, usage and health, from raw rows.

This is what the daemon runs for every window a batch touches (``storage.derived``): given *all* the raw
rows of those windows, plus the stored state of the ``HORIZON_MINUTES`` minutes before each (the
``<counter>_last`` columns of earlier windows, see ``processing.counters``), it computes the windows
exactly as if the whole history had been processed at once, in order. Recomputing a window from all of
its rows, rather than merging partial aggregates, is what makes late and out-of-order frames converge to
the in-order answer bit for bit: the same rows, sorted the same way, give the same floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from processing.counters import increments_and_state
from processing.health import (
    HEALTH_COLUMNS,
    HealthThresholds,
    event_time_link,
    gpu_health,
    gpu_part,
    node_health,
    rack_health_from_parts,
)
from processing.rollups import GPU_COUNTERS, GPU_KEY, RACK_COUNTERS, gpu_rollups, rack_rollups

WINDOW_KEY = ["rack_id", "window_start"]
GPU_WINDOW_KEY = [*GPU_KEY, "window_start"]
TENANT_SCHEMA: dict[str, pl.DataType] = {
    "rack_id": pl.String(),
    "window_start": pl.Datetime("us", "UTC"),
    "tenant": pl.String(),
    "gpu_seconds": pl.Int64(),
    "gpu_ids": pl.List(pl.Int32()),
}
GPU_ID_NODE_FACTOR = 1000
"""``tenant_minutes.gpu_ids`` holds ``node * 1000 + gpu`` (distinct GPUs of a rack, however many)."""


@dataclass(frozen=True, slots=True)
class WindowTables:
    """Recomputed windows: GPU windows and rack windows with health, and tenant usage per rack-minute.

    ``rack`` carries ``gpu_state``/``gpu_reasons`` (the worst of its nodes) but not yet its own
    ``state``/``reasons``: those need the rack's earlier windows (SEU norm), see ``judge_racks``.
    """

    gpu: pl.DataFrame
    rack: pl.DataFrame
    tenants: pl.DataFrame


def lookback_rows(state: pl.DataFrame, keys: list[str], counters: list[str]) -> pl.DataFrame:
    """Stored windows' ``last_epoch, last_seq, <counter>_last`` as ``lookback`` sample rows."""
    return state.select(
        *keys,
        pl.col("last_epoch").alias("boot_epoch"),
        pl.col("last_seq").alias("frame_seq"),
        pl.col("window_start").alias("sampled_at"),
        *(pl.col(f"{c}_last").alias(c) for c in counters),
        pl.lit(value=True).alias("lookback"),
    )


def _lookback(state: pl.DataFrame, keys: list[str], counters: list[str]) -> pl.DataFrame | None:
    return None if state.is_empty() else lookback_rows(state, keys, counters)


TENANT_BOUNDS = [pl.col("tenant").min().alias("_tenant_min"), pl.col("tenant").max().alias("_tenant_max")]
"""Aggregations added to the GPU minutes so that tenant usage comes from them (see ``tenant_minutes``)."""


def tenant_minutes(samples: pl.DataFrame, gpu_minutes: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per rack, minute and tenant: GPU-seconds held (samples with that tenant) and the GPUs that held them.

    With ``gpu_minutes`` (GPU rollups carrying ``TENANT_BOUNDS``), a GPU-minute held by one tenant gives
    ``busy_s`` seconds to it without going back to the samples; only the rare minutes in which a GPU
    changed tenant are counted from ``samples``.
    """
    gpu_id = pl.col("node") * GPU_ID_NODE_FACTOR + pl.col("gpu")
    if gpu_minutes is not None:
        single = gpu_minutes.filter(pl.col("_tenant_min") == pl.col("_tenant_max"))
        mixed = gpu_minutes.filter(pl.col("_tenant_min") != pl.col("_tenant_max")).select(*GPU_WINDOW_KEY)
        mixed_samples = samples.join(
            mixed, left_on=[*GPU_KEY, pl.col("sampled_at").dt.truncate("1m")], right_on=GPU_WINDOW_KEY, how="semi"
        )
        from_minutes = single.group_by("rack_id", "window_start", pl.col("_tenant_min").alias("tenant")).agg(
            pl.col("busy_s").sum().alias("gpu_seconds"), gpu_id.sort().alias("gpu_ids")
        )
        parts = [from_minutes.cast(TENANT_SCHEMA), tenant_minutes(mixed_samples)]  # type: ignore[arg-type]
        merged = (
            pl.concat(parts)
            .group_by("rack_id", "window_start", "tenant")
            .agg(pl.col("gpu_seconds").sum(), pl.col("gpu_ids").explode().unique().sort())
        )
        return merged.cast(TENANT_SCHEMA).sort("rack_id", "window_start", "tenant")  # type: ignore[arg-type]
    return (
        samples.filter(pl.col("tenant").is_not_null())
        .group_by("rack_id", pl.col("sampled_at").dt.truncate("1m").alias("window_start"), "tenant")
        .agg(pl.len().alias("gpu_seconds"), gpu_id.unique().sort().alias("gpu_ids"))
        .cast(TENANT_SCHEMA)  # type: ignore[arg-type]
        .sort("rack_id", "window_start", "tenant")
    )


def compute_windows(
    samples: pl.DataFrame,
    frames: pl.DataFrame,
    gpu_state: pl.DataFrame,
    rack_state: pl.DataFrame,
    thresholds: HealthThresholds | None = None,
) -> WindowTables:
    """Every window of ``frames``/``samples`` (raw ``rack_frames``/``gpu_samples`` rows, all of each window).

    ``gpu_state``/``rack_state``: stored windows of the same racks from the ``HORIZON_MINUTES`` minutes
    before them (``GPU_WINDOW_KEY``/``WINDOW_KEY``, ``last_epoch``, ``last_seq``, ``<counter>_last``),
    none of them among the windows recomputed.
    """
    gpu_incs, gpu_last = increments_and_state(
        samples, GPU_COUNTERS, GPU_KEY, _lookback(gpu_state, GPU_KEY, GPU_COUNTERS)
    )
    gpu = gpu_rollups(gpu_incs, state=gpu_last, extra=TENANT_BOUNDS)
    tenants = tenant_minutes(samples, gpu)
    return windows_of_gpu_minutes(gpu.drop("_tenant_min", "_tenant_max"), tenants, frames, rack_state, thresholds)


def windows_of_gpu_minutes(
    gpu: pl.DataFrame,
    tenants: pl.DataFrame,
    frames: pl.DataFrame,
    rack_state: pl.DataFrame,
    thresholds: HealthThresholds | None = None,
) -> WindowTables:
    """The windows of complete GPU minutes (``gpu_rollups`` rows, every GPU of each rack-minute, sorted
    by ``GPU_WINDOW_KEY``) and all raw ``frames`` of those rack-minutes: GPU health, node health, rack
    rollups. Shared by the recompute (``compute_windows``) and the merge (``processing.merge``)."""
    t = thresholds or HealthThresholds()
    judged = gpu_health(gpu, t)
    gpu = gpu.join(judged, on=GPU_WINDOW_KEY, how="left")
    nodes = gpu_part(node_health(judged)).rename({"state": "gpu_state", "reasons": "gpu_reasons"})
    rack_incs, rack_last = increments_and_state(
        frames, RACK_COUNTERS, ["rack_id"], _lookback(rack_state, ["rack_id"], RACK_COUNTERS)
    )
    rack = rack_rollups(gpu, rack_incs, "1m", state=rack_last).join(nodes, on=WINDOW_KEY, how="left")
    rack = rack.with_columns(
        pl.col("gpu_state").fill_null("unknown"), pl.col("gpu_reasons").fill_null(pl.lit([], pl.List(pl.String)))
    )
    return WindowTables(gpu=gpu, rack=rack, tenants=tenants)


def judge_racks(racks: pl.DataFrame, earlier: pl.DataFrame, thresholds: HealthThresholds | None = None) -> pl.DataFrame:
    """Rack health in event time (history as it happened) of ``racks``' windows: ``state, reasons`` added.

    ``racks``: rack windows with ``gpu_state``/``gpu_reasons``; ``earlier``: the same racks' stored
    windows before them (``rack_id, window_start, seu_inc, coverage``), at least the SEU baseline's span,
    from which the rack's SEU norm is learnt. Silence is not judged here: that is ``judge_now``'s job.
    """
    t = thresholds or HealthThresholds()
    own = racks.drop(HEALTH_COLUMNS, strict=False).with_columns(pl.lit(value=True).alias("_judged"))
    context = earlier.select(*WINDOW_KEY, "seu_inc", "coverage").with_columns(pl.lit(value=False).alias("_judged"))
    both = pl.concat([own, context], how="diagonal_relaxed").drop(
        "last_frame_at",
        "as_of",
        "in_contact_expected",
        "expected_frame_interval_s",
        "predicted_next_contact",
        strict=False,
    )
    both = both.with_columns(event_time_link())
    gpus = racks.select(*WINDOW_KEY, pl.col("gpu_state").alias("state"), pl.col("gpu_reasons").alias("reasons"))
    judged = rack_health_from_parts(both, gpus, t).join(both.select(*WINDOW_KEY, "_judged"), on=WINDOW_KEY, how="inner")
    verdict = judged.filter(pl.col("_judged")).select(*WINDOW_KEY, *HEALTH_COLUMNS)
    return racks.drop(HEALTH_COLUMNS, strict=False).join(verdict, on=WINDOW_KEY, how="left")
