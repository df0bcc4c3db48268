"""GPU samples and ECC increments per hour (``gpu_ecc_hours``, a ``storage.hourly`` rollup of
``gpu_windows_1m``): what the saved query ``rising-ecc`` reads instead of a day of GPU-minute windows
(64,000 GPUs x 1,440 minutes a day for 1,000 racks); and the same per 10-minute slice of the last two hours
(``gpu_ecc_slices``), which it reads for the open hour instead of up to 65 minutes of windows.

The sums of the nullable increments keep SQL's meaning through the ``*_minutes`` counts (a sum is NULL when
no minute had a value), so ``rising-ecc`` answers exactly what it answered from the minute windows
(``tests/test_hourly_rollups.py`` compares the two).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import polars as pl

from storage.hourly import HOUR, SLICE, Rollup, bucket_of, bucket_of_window
from storage.table import Table
from storage.tables import GPU_ECC_HOURS, GPU_ECC_SLICES

_GPU = ("rack_id", "node", "gpu")


def _terms(bucket: pl.Expr) -> Callable[[pl.DataFrame, int], pl.DataFrame]:
    """GPU windows as terms of ``bucket``, counted ``sign`` times (-1: taken away)."""

    def terms(windows: pl.DataFrame, sign: int) -> pl.DataFrame:
        return windows.select(
            *_GPU,
            bucket,
            pl.lit(sign, pl.Int64).alias("minutes"),
            pl.col("samples").cast(pl.Int64) * sign,
            pl.col("ecc_sbe_inc").fill_null(0).cast(pl.Int64).alias("ecc_sbe_inc") * sign,
            pl.col("ecc_sbe_inc").is_not_null().cast(pl.Int64).alias("ecc_sbe_minutes") * sign,
            pl.col("ecc_dbe_inc").fill_null(0).cast(pl.Int64).alias("ecc_dbe_inc") * sign,
            pl.col("ecc_dbe_inc").is_not_null().cast(pl.Int64).alias("ecc_dbe_minutes") * sign,
            (pl.col("window_start") if sign > 0 else pl.lit(None, pl.Datetime("us", "UTC"))).alias("last_minute"),
        )

    return terms


_SUMS = (*(pl.col(c).sum() for c in GPU_ECC_HOURS.names[4:-1]), pl.col("last_minute").max())


def _ecc_rollup(table: Table, width: timedelta, bucket: str, keep: timedelta | None = None) -> Rollup:
    """The GPU ECC rollup of ``gpu_windows_1m`` into ``table``, per GPU and bucket of ``width``."""
    return Rollup(
        table=table,
        source="gpu_windows_1m",
        key=_GPU,
        accounted=(*_GPU, "window_start", "samples", "ecc_sbe_inc", "ecc_dbe_inc"),
        roll_select=f"""rack_id, node, gpu, {bucket_of_window(width)} AS {bucket}, count(*), sum(samples),
            coalesce(sum(ecc_sbe_inc), 0), count(ecc_sbe_inc), coalesce(sum(ecc_dbe_inc), 0), count(ecc_dbe_inc),
            max(window_start)""",
        terms=_terms(bucket_of("window_start", width, bucket)),
        sums=_SUMS,
        width=width,
        bucket=bucket,
        keep=keep,
    )


ECC_HOURS = _ecc_rollup(GPU_ECC_HOURS, HOUR, "hour")
ECC_SLICES = _ecc_rollup(GPU_ECC_SLICES, SLICE, "slice", keep=2 * HOUR)
