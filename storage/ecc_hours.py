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

import polars as pl

from storage.hourly import HOUR, HOUR_OF_WINDOW, SLICE, SLICE_OF_WINDOW, Rollup, bucket_of
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


def _roll_select(bucket_sql: str) -> str:
    return f"""rack_id, node, gpu, {bucket_sql}, count(*), sum(samples),
        coalesce(sum(ecc_sbe_inc), 0), count(ecc_sbe_inc), coalesce(sum(ecc_dbe_inc), 0), count(ecc_dbe_inc),
        max(window_start)"""


_ACCOUNTED = (*_GPU, "window_start", "samples", "ecc_sbe_inc", "ecc_dbe_inc")
_SUMS = (*(pl.col(c).sum() for c in GPU_ECC_HOURS.names[4:-1]), pl.col("last_minute").max())
ECC_HOURS = Rollup(
    table=GPU_ECC_HOURS,
    source="gpu_windows_1m",
    key=_GPU,
    accounted=_ACCOUNTED,
    roll_select=_roll_select(f"{HOUR_OF_WINDOW} AS hour"),
    terms=_terms(bucket_of("window_start", HOUR, "hour")),
    sums=_SUMS,
)
ECC_SLICES = Rollup(
    table=GPU_ECC_SLICES,
    source="gpu_windows_1m",
    key=_GPU,
    accounted=_ACCOUNTED,
    roll_select=_roll_select(f"{SLICE_OF_WINDOW} AS slice"),
    terms=_terms(bucket_of("window_start", SLICE, "slice")),
    sums=_SUMS,
    width=SLICE,
    bucket="slice",
    keep=2 * HOUR,
)
