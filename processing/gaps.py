"""Completeness: the missing ``frame_seq`` ranges of each rack, per ``boot_epoch``.

A gap is a range of ``frame_seq`` values absent between the smallest and the largest value present for one
``(rack_id, boot_epoch)``. Playback (``stored = true``) usually fills gaps later; a gap that is filled
disappears from the table.

Two ways to get the gap table, which agree (a property test checks it):

- ``find_gaps(frames)``: from every frame seen, in one vectorised gaps-and-islands pass.
- ``update_gaps(open_gaps, new_frames, max_seq_before)``: incrementally, from the previous open gaps, the
  previous ``seq_bounds`` and a new batch of frames. Its cost and state are bounded by the number of open
  gaps plus the number of ``(rack_id, boot_epoch)`` pairs, not by the length of the history.

Method: the seqs known present form islands, and each island is an interval ``[start, end]``. Sorted by
``start`` within a key, an interval whose start lies beyond the running maximum ``end`` of those before it
(plus one) leaves a gap between them. A single frame is the interval ``[seq, seq]``; the previous state
is its islands (the bounds minus the open gaps). Duplicate frames are harmless: they overlap.
"""

from __future__ import annotations

import polars as pl

from processing.errors import FrameShapeError

GROUP = ["rack_id", "boot_epoch"]
GAP_SCHEMA: dict[str, pl.DataType] = {
    "rack_id": pl.String(),
    "boot_epoch": pl.Int32(),
    "first_missing": pl.Int64(),
    "last_missing": pl.Int64(),
    "missing": pl.Int64(),
}
BOUNDS_SCHEMA: dict[str, pl.DataType] = {
    "rack_id": pl.String(),
    "boot_epoch": pl.Int32(),
    "min_seq": pl.Int64(),
    "max_seq": pl.Int64(),
}
_INTERVAL_SCHEMA: dict[str, pl.DataType] = {
    "rack_id": pl.String(),
    "boot_epoch": pl.Int32(),
    "start": pl.Int64(),
    "end": pl.Int64(),
}


def _require(frame: pl.DataFrame, columns: list[str], what: str) -> None:
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise FrameShapeError(f"{what} lacks columns {missing}")


def _points(frames: pl.DataFrame) -> pl.DataFrame:
    """Each distinct frame as the interval ``[frame_seq, frame_seq]``."""
    _require(frames, [*GROUP, "frame_seq"], "frames")
    seq = pl.col("frame_seq").cast(pl.Int64)
    return (
        frames.select(*GROUP, seq.alias("start"), seq.alias("end")).unique().cast(_INTERVAL_SCHEMA)  # type: ignore[arg-type]
    )


def _gaps_between(intervals: pl.DataFrame) -> pl.DataFrame:
    """The ranges covered by no interval, between the first and last interval of each key."""
    reach = pl.col("end").cum_max().shift(1).over(GROUP)
    return (
        intervals.sort(*GROUP, "start")
        .with_columns(reach.alias("reach"))
        .filter(pl.col("start") > pl.col("reach") + 1)
        .select(
            *GROUP,
            (pl.col("reach") + 1).alias("first_missing"),
            (pl.col("start") - 1).alias("last_missing"),
            (pl.col("start") - pl.col("reach") - 1).alias("missing"),
        )
        .cast(GAP_SCHEMA)  # type: ignore[arg-type]
    )


def find_gaps(frames: pl.DataFrame) -> pl.DataFrame:
    """Missing ranges ``(rack_id, boot_epoch, first_missing, last_missing, missing)`` from frame keys.

    ``frames`` needs ``rack_id, boot_epoch, frame_seq``; any order, duplicates allowed. Rows are sorted by
    ``rack_id, boot_epoch, first_missing``; ``missing`` is the number of seqs in the inclusive range.
    """
    return _gaps_between(_points(frames))


def seq_bounds(frames: pl.DataFrame, before: pl.DataFrame | None = None) -> pl.DataFrame:
    """Smallest and largest ``frame_seq`` per ``(rack_id, boot_epoch)``, merged with earlier ``before``.

    Returns ``rack_id, boot_epoch, min_seq, max_seq``: the second half of ``update_gaps``' state.
    """
    _require(frames, [*GROUP, "frame_seq"], "frames")
    seq = pl.col("frame_seq").cast(pl.Int64)
    new = frames.group_by(GROUP).agg(seq.min().alias("min_seq"), seq.max().alias("max_seq"))
    parts = [new.cast(BOUNDS_SCHEMA)]  # type: ignore[arg-type]
    if before is not None:
        _require(before, list(BOUNDS_SCHEMA), "seq bounds")
        parts.append(before.select(list(BOUNDS_SCHEMA)).cast(BOUNDS_SCHEMA))  # type: ignore[arg-type]
    merged = pl.concat(parts).group_by(GROUP).agg(pl.col("min_seq").min(), pl.col("max_seq").max())
    return merged.sort(GROUP)


def _islands(open_gaps: pl.DataFrame, bounds: pl.DataFrame) -> pl.DataFrame:
    """The seq intervals known present: each key's ``[min_seq, max_seq]`` minus its open gaps."""
    gaps = open_gaps.join(bounds, on=GROUP, how="inner").sort(*GROUP, "first_missing")
    before_each_gap = gaps.select(
        *GROUP,
        (pl.col("last_missing").shift(1).over(GROUP) + 1).fill_null(pl.col("min_seq")).alias("start"),
        (pl.col("first_missing") - 1).alias("end"),
    )
    last_gap_end = open_gaps.group_by(GROUP).agg(pl.col("last_missing").max())
    tail = bounds.join(last_gap_end, on=GROUP, how="left").select(
        *GROUP,
        (pl.col("last_missing") + 1).fill_null(pl.col("min_seq")).alias("start"),
        pl.col("max_seq").alias("end"),
    )
    return pl.concat([before_each_gap, tail]).cast(_INTERVAL_SCHEMA)  # type: ignore[arg-type]


def update_gaps(open_gaps: pl.DataFrame, new_frames: pl.DataFrame, max_seq_before: pl.DataFrame) -> pl.DataFrame:
    """The gap table after ``new_frames`` arrive, from the table and ``seq_bounds`` before them.

    ``open_gaps`` has ``find_gaps``' columns; ``max_seq_before`` is ``seq_bounds`` of every earlier frame
    (``rack_id, boot_epoch, min_seq, max_seq``; the smallest seq is needed too, because playback can bring
    seqs below the first one seen). New seqs beyond the previous maximum open a gap from the old maximum
    when they are not contiguous with it (likewise below the minimum); new seqs inside an open gap split,
    shrink or close it. Only keys present in ``new_frames`` are recomputed; the others' gaps pass through.
    """
    _require(open_gaps, list(GAP_SCHEMA), "open gaps")
    _require(max_seq_before, list(BOUNDS_SCHEMA), "seq bounds")
    points = _points(new_frames)
    touched = points.select(GROUP).unique()
    gaps = open_gaps.select(list(GAP_SCHEMA)).cast(GAP_SCHEMA)  # type: ignore[arg-type]
    bounds = max_seq_before.select(list(BOUNDS_SCHEMA)).cast(BOUNDS_SCHEMA)  # type: ignore[arg-type]
    touched_gaps = gaps.join(touched, on=GROUP, how="semi")
    touched_bounds = bounds.join(touched, on=GROUP, how="semi")
    recomputed = _gaps_between(pl.concat([_islands(touched_gaps, touched_bounds), points]))
    untouched = gaps.join(touched, on=GROUP, how="anti")
    return pl.concat([untouched, recomputed]).sort(*GROUP, "first_missing")
