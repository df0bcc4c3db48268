"""Predicted loss of signal, learnt from what the ground has seen (no orbit data, no station schedule).

Method, per rack, using only frames the ground had received by ``now`` (``received_at <= now``), so the
same function answers "what did the ground expect at moment T" for any past T:

1. Live frames (``stored = false``) arrive only during a ground pass. Sorted by ``received_at``, live
   frames less than ``pass_break_s`` apart belong to one pass; a longer silence starts a new pass.
2. ``pass_interval_s`` is the median interval between consecutive pass starts, or ``orbit_period_s``
   when only one pass was seen. ``predicted_next_contact = last_pass_start + pass_interval_s``.
3. ``in_contact_expected`` is true while a pass is under way (the last live frame is less than
   ``pass_break_s`` old) and again once ``predicted_next_contact + tolerance_s`` has passed without a new
   pass (the rack is then overdue). In between, silence is a predicted loss of signal, not a fault.
4. ``expected_frame_interval_s`` is the median gap between consecutive live frames inside passes (the
   live frame rate, 1 s per the contract), 1 s when no pass has two frames.

Limits, plainly: passes over one ground station are not periodic (a low orbit passes over a station a few
times in a row, then not for hours), so the median interval is only right for a network of stations that
sees the rack about once per orbit; a missed pass makes the rack look overdue until the next one; a
rack that dies in the middle of a pass looks like a pass that ended early, so it is reported as a
predicted loss of signal from ``pass_break_s`` after its last frame until it is overdue. A rack never seen
live has no prediction (``in_contact_expected`` false, ``predicted_next_contact`` null). Playback frames
(``stored = true``) do not mark passes: they are read only for ``last_frame_at`` and ``last_sampled_at``.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from processing.errors import FrameShapeError

HISTORY_COLUMNS = ("rack_id", "received_at", "stored", "sampled_at")
CONTACT_SCHEMA: dict[str, pl.DataType] = {
    "rack_id": pl.String(),
    "as_of": pl.Datetime("us", "UTC"),
    "last_frame_at": pl.Datetime("us", "UTC"),
    "last_sampled_at": pl.Datetime("us", "UTC"),
    "last_live_at": pl.Datetime("us", "UTC"),
    "last_pass_start": pl.Datetime("us", "UTC"),
    "passes_seen": pl.UInt32(),
    "pass_interval_s": pl.Float64(),
    "expected_frame_interval_s": pl.Float64(),
    "predicted_next_contact": pl.Datetime("us", "UTC"),
    "in_contact_expected": pl.Boolean(),
}


def _seconds(expr: pl.Expr) -> pl.Expr:
    return expr.dt.total_microseconds().cast(pl.Float64) / 1e6


def _passes(live: pl.DataFrame, pass_break_s: float) -> pl.DataFrame:
    """Live frames numbered by pass: ``rack_id, received_at, pass_no, since_prev_s``."""
    since_prev = _seconds(pl.col("received_at").diff().over("rack_id"))
    return (
        live.sort("rack_id", "received_at")
        .with_columns(since_prev.alias("since_prev_s"))
        .with_columns(
            (pl.col("since_prev_s").is_null() | (pl.col("since_prev_s") > pass_break_s))
            .cum_sum()
            .over("rack_id")
            .alias("pass_no")
        )
    )


def _pass_pattern(live: pl.DataFrame, pass_break_s: float, orbit_period_s: float) -> pl.DataFrame:
    """Per rack: last live frame, last pass start, passes seen, pass interval, live frame interval."""
    numbered = _passes(live, pass_break_s)
    starts = numbered.group_by("rack_id", "pass_no").agg(pl.col("received_at").min().alias("start"))
    intervals = (
        starts.sort("rack_id", "start")
        .with_columns(_seconds(pl.col("start").diff().over("rack_id")).alias("interval_s"))
        .group_by("rack_id")
        .agg(
            pl.col("start").max().alias("last_pass_start"),
            pl.len().cast(pl.UInt32).alias("passes_seen"),
            pl.col("interval_s").median().fill_null(orbit_period_s).alias("pass_interval_s"),
        )
    )
    within = pl.col("since_prev_s").filter(pl.col("since_prev_s") <= pass_break_s)
    rates = numbered.group_by("rack_id").agg(
        pl.col("received_at").max().alias("last_live_at"),
        within.median().fill_null(1.0).alias("expected_frame_interval_s"),
    )
    return intervals.join(rates, on="rack_id")


def expected_contact(
    rack_history: pl.DataFrame,
    now: datetime,
    orbit_period_s: float = 5760,
    *,
    pass_break_s: float = 120.0,
    tolerance_s: float = 300.0,
) -> pl.DataFrame:
    """Per rack, whether frames should be arriving at ``now``, learnt from its earlier passes.

    ``rack_history`` needs ``rack_id, received_at`` (Kafka timestamp), ``stored`` and ``sampled_at``; rows
    received after ``now`` are ignored. Returns ``CONTACT_SCHEMA``'s columns, one row per rack seen.
    """
    missing = sorted(set(HISTORY_COLUMNS) - set(rack_history.columns))
    if missing:
        raise FrameShapeError(f"rack history lacks columns {missing}")
    known = rack_history.select(HISTORY_COLUMNS).filter(pl.col("received_at") <= now)
    seen = known.group_by("rack_id").agg(
        pl.col("received_at").max().alias("last_frame_at"),
        pl.col("sampled_at").max().alias("last_sampled_at"),
    )
    pattern = _pass_pattern(known.filter(~pl.col("stored")), pass_break_s, orbit_period_s)
    next_contact = pl.col("last_pass_start") + pl.duration(seconds=pl.col("pass_interval_s"))
    now_lit = pl.lit(now).dt.convert_time_zone("UTC")
    in_pass = _seconds(now_lit - pl.col("last_live_at")) <= pass_break_s
    overdue = _seconds(now_lit - pl.col("predicted_next_contact")) >= tolerance_s
    return (
        seen.join(pattern, on="rack_id", how="left")
        .with_columns(
            now_lit.alias("as_of"),
            next_contact.alias("predicted_next_contact"),
            pl.col("passes_seen").fill_null(0),
        )
        .with_columns((in_pass | overdue).fill_null(value=False).alias("in_contact_expected"))
        .select(list(CONTACT_SCHEMA))
        .cast(CONTACT_SCHEMA)  # type: ignore[arg-type]
        .sort("rack_id")
    )
