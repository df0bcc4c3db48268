"""Increments of cumulative counters, correct across reboots and resets, and the windows late frames touch.

The counters (``ecc_sbe``, ``ecc_dbe``, ``nvlink_errors`` per GPU in ``gpu_samples``, ``seu_count`` per
rack in ``rack_frames``) count since the rack controller booted. Each sample gets an increment:

- per entity (``keys``, e.g. ``rack_id, node, gpu``) and ``boot_epoch``, in ``frame_seq`` order,
  ``inc = value - previous``, where *previous* is the last non-NULL value of the same entity and epoch
  among the input rows (a NULL reading, flagged impossible, has a NULL increment and is skipped);
- the first sample of an epoch present in the input has ``inc = value``: the counter started at 0 at boot,
  so whatever it counted before that sample (including in lost frames) is attributed to that sample;
- a negative difference inside an epoch (a reset without reboot) counts the new value, as Prometheus'
  ``increase()`` does.

**A window's increment is the sum of its samples' increments.** A sample's increment depends only on
itself and the previous present sample of its entity and epoch. Hence:

- a window can be computed on its own from its samples plus, per entity, one *lookback* row (flagged
  ``lookback = True``) that carries the previous values: the last earlier sample, with each counter
  replaced by its last non-NULL value in that sample's epoch (in SQL, ``last_value(c IGNORE NULLS)``);
  if that sample is in an older epoch, it is simply not used;
- when a late frame F is stored between its previous present frame P and its next present frame N (same
  rack and epoch), F's increment is new and N's changes (``N - P`` becomes ``N - F``), P's does not: the
  windows to recompute are F's window and N's window, and nothing else
  (``windows_touched_by_late_frames``). Means, maxes, counts and coverage depend only on a window's own
  samples, so they change only in F's window.

Precisely, "N" is, per entity and counter, the next sample of the same epoch whose reading of that counter
is not NULL: a NULL reading passes the previous value on. When every sample of F's frame is present and
readable in the next frame, that is simply the next present frame; otherwise the wiring passes each such
sample's frame (in SQL, per GPU and counter, ``min(frame_seq) WHERE c IS NOT NULL AND frame_seq > F``).
Assumption: within a rack, ``sampled_at`` increases with ``(boot_epoch, frame_seq)``.
"""

from __future__ import annotations

import polars as pl

from processing.errors import FrameShapeError

LOOKBACK = "lookback"
_FRAME_ORDER = ["boot_epoch", "frame_seq"]


def counter_increments(samples: pl.DataFrame, counters: list[str], keys: list[str]) -> pl.DataFrame:
    """Add ``<counter>_inc`` per counter; drop ``lookback`` rows (used only as previous values).

    The result is sorted by ``keys``, ``boot_epoch``, ``frame_seq`` whatever the input order, so the
    same rows in any order give the same output.
    """
    required = {*keys, *_FRAME_ORDER, *counters}
    missing = required - set(samples.columns)
    if missing:
        raise FrameShapeError(f"samples lack columns {sorted(missing)} needed for counter increments")
    ordered = samples.sort([*keys, *_FRAME_ORDER])
    epoch = [*keys, "boot_epoch"]
    with_incs = ordered.with_columns(_increment(counter, epoch).alias(f"{counter}_inc") for counter in counters)
    if LOOKBACK not in with_incs.columns:
        return with_incs
    return with_incs.filter(~pl.col(LOOKBACK)).drop(LOOKBACK)


def _increment(counter: str, epoch: list[str]) -> pl.Expr:
    """``value - previous non-NULL value`` in the epoch; ``value`` when there is none or it went down."""
    value = pl.col(counter)
    previous = value.forward_fill().shift(1).over(epoch, order_by="frame_seq")
    return (
        pl.when(value.is_null())
        .then(None)
        .when(previous.is_null() | (value < previous))
        .then(value)
        .otherwise(value - previous)
    )


def windows_touched_by_late_frames(stored: pl.DataFrame, following: pl.DataFrame, every: str) -> pl.DataFrame:
    """The ``(rack_id, window_start)`` windows of width ``every`` to recompute after storing late frames.

    ``stored``: the newly stored frames, ``(rack_id, boot_epoch, frame_seq, sampled_at)``.
    ``following``: for each of them, the next present frame of the same rack and epoch after storing
    them (same columns; none when there is no later frame), or, where frames may lack GPUs or carry NULL
    counter readings, the frame of each entity's next sample with a non-NULL reading of each counter
    (any number of rows). The result holds every window whose rollups can differ from before; see the
    module docstring for why.
    """
    columns = ["rack_id", "boot_epoch", "frame_seq", "sampled_at"]
    for name, frame in (("stored", stored), ("following", following)):
        missing = set(columns) - set(frame.columns)
        if missing:
            raise FrameShapeError(f"{name} frames lack columns {sorted(missing)}")
    both = pl.concat([stored.select(columns), following.select(columns)], how="vertical_relaxed")
    return (
        both.select("rack_id", pl.col("sampled_at").dt.truncate(every).alias("window_start"))
        .unique()
        .sort("rack_id", "window_start")
    )
