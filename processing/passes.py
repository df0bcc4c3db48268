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

from dataclasses import dataclass
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


LINK_SCHEMA: dict[str, pl.DataType] = {
    "rack_id": pl.String(),
    "last_frame_at": pl.Datetime("us", "UTC"),
    "last_sampled_at": pl.Datetime("us", "UTC"),
    "last_live_at": pl.Datetime("us", "UTC"),
    "pass_starts": pl.List(pl.Datetime("us", "UTC")),
    "passes_seen": pl.UInt32(),
    "expected_frame_interval_s": pl.Float64(),
}
KEEP_PASSES = 8


@dataclass(frozen=True, slots=True)
class ContactModel:
    """How ground passes are predicted (the method above): the defaults are the contract's orbit."""

    orbit_period_s: float = 5760.0
    """pass interval assumed until two passes were seen (a 96-minute orbit)"""
    pass_break_s: float = 120.0
    """live silence that ends a ground pass"""
    tolerance_s: float = 300.0
    """lateness after a predicted pass before a rack is stale"""


DEFAULT_CONTACT = ContactModel()


def _seconds(expr: pl.Expr) -> pl.Expr:
    return expr.dt.total_microseconds().cast(pl.Float64) / 1e6


def empty_link_state() -> pl.DataFrame:
    """The link state of a ground segment that has seen nothing."""
    return pl.DataFrame(schema=LINK_SCHEMA)


def update_link_state(
    state: pl.DataFrame,
    frames: pl.DataFrame,
    *,
    pass_break_s: float = DEFAULT_CONTACT.pass_break_s,
    keep: int | None = KEEP_PASSES,
) -> pl.DataFrame:
    """Fold newly received frames into the per-rack link state (steps 1 and 4 of the method above).

    ``state`` has ``LINK_SCHEMA`` (start from ``empty_link_state()``); ``frames`` need ``rack_id,
    received_at, stored, sampled_at``. Per rack it keeps the starts of the last ``keep`` passes (all when
    None), so the state stays small however long the history; ``passes_seen`` counts every pass. Frames of
    one rack must arrive in ``received_at`` order across calls (one rack is one Kafka partition).
    """
    missing = sorted(set(HISTORY_COLUMNS) - set(frames.columns))
    if missing:
        raise FrameShapeError(f"frames lack columns {missing}")
    seen = frames.group_by("rack_id").agg(
        pl.col("received_at").max().alias("last_frame_at"), pl.col("sampled_at").max().alias("last_sampled_at")
    )
    earlier_live = state.select("rack_id", pl.col("last_live_at").alias("received_at")).drop_nulls()
    live = frames.filter(~pl.col("stored")).select("rack_id", "received_at")
    numbered = _passes(
        pl.concat([earlier_live.with_columns(pl.lit(value=True).alias("old")), live.with_columns(old=False)]),
        pass_break_s,
    )
    new_passes = numbered.filter(
        ~pl.col("old") & (pl.col("since_prev_s").is_null() | (pl.col("since_prev_s") > pass_break_s))
    )
    within = pl.col("since_prev_s").filter(~pl.col("old") & (pl.col("since_prev_s") <= pass_break_s))
    batch = seen.join(
        new_passes.group_by("rack_id").agg(pl.col("received_at").sort().alias("new_starts")), on="rack_id", how="left"
    ).join(
        numbered.filter(~pl.col("old"))
        .group_by("rack_id")
        .agg(pl.col("received_at").max().alias("batch_live_at"), within.median().alias("batch_interval_s")),
        on="rack_id",
        how="left",
    )
    merged = state.join(batch, on="rack_id", how="full", coalesce=True, suffix="_new")
    starts = pl.concat_list(
        pl.col("pass_starts").fill_null(pl.lit([], LINK_SCHEMA["pass_starts"])),
        pl.col("new_starts").fill_null(pl.lit([], LINK_SCHEMA["pass_starts"])),
    )
    return (
        merged.with_columns(
            pl.max_horizontal("last_frame_at", "last_frame_at_new").alias("last_frame_at"),
            pl.max_horizontal("last_sampled_at", "last_sampled_at_new").alias("last_sampled_at"),
            pl.max_horizontal("last_live_at", "batch_live_at").alias("last_live_at"),
            (starts.list.tail(keep) if keep is not None else starts).alias("pass_starts"),
            (pl.col("passes_seen").fill_null(0) + pl.col("new_starts").list.len().fill_null(0)).alias("passes_seen"),
            pl.coalesce("batch_interval_s", "expected_frame_interval_s", pl.lit(1.0)).alias(
                "expected_frame_interval_s"
            ),
        )
        .select(list(LINK_SCHEMA))
        .cast(LINK_SCHEMA)  # type: ignore[arg-type]
        .sort("rack_id")
    )


def contact_at(
    link_state: pl.DataFrame,
    now: datetime,
    contact: ContactModel = DEFAULT_CONTACT,
) -> pl.DataFrame:
    """Per rack in ``link_state``, whether frames should be arriving at ``now`` (steps 2 and 3 above).

    Returns ``CONTACT_SCHEMA``'s columns. ``now`` should not be earlier than the frames folded into the
    state; use ``expected_contact`` to ask about an earlier moment of a full history.
    """
    starts = pl.col("pass_starts")
    intervals = starts.list.eval(_seconds(pl.element().diff()).drop_nulls())
    next_contact = pl.col("last_pass_start") + pl.duration(seconds=pl.col("pass_interval_s"))
    now_lit = pl.lit(now).dt.convert_time_zone("UTC")
    in_pass = _seconds(now_lit - pl.col("last_live_at")) <= contact.pass_break_s
    overdue = _seconds(now_lit - pl.col("predicted_next_contact")) >= contact.tolerance_s
    return (
        link_state.with_columns(
            now_lit.alias("as_of"),
            starts.list.max().alias("last_pass_start"),
            intervals.list.median().fill_null(contact.orbit_period_s).alias("pass_interval_s"),
        )
        .with_columns(next_contact.alias("predicted_next_contact"))
        .with_columns((in_pass | overdue).fill_null(value=False).alias("in_contact_expected"))
        .select(list(CONTACT_SCHEMA))
        .cast(CONTACT_SCHEMA)  # type: ignore[arg-type]
        .sort("rack_id")
    )


def _passes(live: pl.DataFrame, pass_break_s: float) -> pl.DataFrame:
    """Live frames with the seconds since the rack's previous live frame, sorted by rack and time."""
    since_prev = _seconds(pl.col("received_at").diff().over("rack_id"))
    return live.sort("rack_id", "received_at").with_columns(since_prev.alias("since_prev_s"))


def expected_contact(
    rack_history: pl.DataFrame,
    now: datetime,
    contact: ContactModel = DEFAULT_CONTACT,
) -> pl.DataFrame:
    """Per rack, whether frames should be arriving at ``now``, learnt from its earlier passes.

    ``rack_history`` needs ``rack_id, received_at`` (Kafka timestamp), ``stored`` and ``sampled_at``; rows
    received after ``now`` are ignored, so this answers for any past moment. Returns ``CONTACT_SCHEMA``'s
    columns, one row per rack seen. The daemon keeps the same state incrementally (``update_link_state``).
    """
    missing = sorted(set(HISTORY_COLUMNS) - set(rack_history.columns))
    if missing:
        raise FrameShapeError(f"rack history lacks columns {missing}")
    known = rack_history.select(HISTORY_COLUMNS).filter(pl.col("received_at") <= now)
    state = update_link_state(empty_link_state(), known, pass_break_s=contact.pass_break_s, keep=None)
    return contact_at(state, now, contact)
