"""GPU samples and ECC increments per hour (``gpu_ecc_hours``, a ``storage.hourly`` rollup of
``gpu_windows_1m``): what the saved query ``rising-ecc`` reads instead of a day of GPU-minute windows
(64,000 GPUs x 1,440 minutes a day for 1,000 racks).

The sums of the nullable increments keep SQL's meaning through the ``*_minutes`` counts (a sum is NULL when
no minute had a value), so ``rising-ecc`` answers exactly what it answered from the minute windows
(``tests/test_hourly_rollups.py`` compares the two).
"""

from __future__ import annotations

import polars as pl

from storage.hourly import HOUR_OF_WINDOW, Rollup, hour_of
from storage.tables import GPU_ECC_HOURS

_GPU = ("rack_id", "node", "gpu")


def _terms(windows: pl.DataFrame, sign: int) -> pl.DataFrame:
    """GPU windows as ``gpu_ecc_hours`` terms, counted ``sign`` times (-1: taken away)."""
    return windows.select(
        *_GPU,
        hour_of("window_start"),
        pl.lit(sign, pl.Int64).alias("minutes"),
        pl.col("samples").cast(pl.Int64) * sign,
        pl.col("ecc_sbe_inc").fill_null(0).cast(pl.Int64).alias("ecc_sbe_inc") * sign,
        pl.col("ecc_sbe_inc").is_not_null().cast(pl.Int64).alias("ecc_sbe_minutes") * sign,
        pl.col("ecc_dbe_inc").fill_null(0).cast(pl.Int64).alias("ecc_dbe_inc") * sign,
        pl.col("ecc_dbe_inc").is_not_null().cast(pl.Int64).alias("ecc_dbe_minutes") * sign,
        (pl.col("window_start") if sign > 0 else pl.lit(None, pl.Datetime("us", "UTC"))).alias("last_minute"),
    )


ECC_HOURS = Rollup(
    table=GPU_ECC_HOURS,
    source="gpu_windows_1m",
    key=_GPU,
    accounted=(*_GPU, "window_start", "samples", "ecc_sbe_inc", "ecc_dbe_inc"),
    roll_select=f"""rack_id, node, gpu, {HOUR_OF_WINDOW} AS hour, count(*), sum(samples),
        coalesce(sum(ecc_sbe_inc), 0), count(ecc_sbe_inc), coalesce(sum(ecc_dbe_inc), 0), count(ecc_dbe_inc),
        max(window_start)""",
    terms=_terms,
    sums=(*(pl.col(c).sum() for c in GPU_ECC_HOURS.names[4:-1]), pl.col("last_minute").max()),
)
