"""The in-memory tip of each recently ingested rack: the window state its next in-order frames start from.

A rack whose new frames all follow its stored ones (the live case, ``processing.merge``) needs, from its
history, only (1) the readings its GPUs' counter increments start from and (2) the rack windows of the SEU
norm's span (70 minutes). Reading those from ``gpu_windows_1m``/``rack_windows_1m`` every batch meant,
with 1,000 racks, 640,000 stored GPU windows read and sorted per batch for a few thousand new frames. The
tips keep them in memory instead, exactly:

- **GPU lookback, compacted**: per GPU, the state of its newest window (``last_epoch``, ``last_seq``,
  ``<counter>_last``) and, when a counter was unreadable there, the newest earlier window of the same epoch
  and horizon that has it. A new in-order reading's previous reading is the last non-NULL one of its
  epoch within ``HORIZON_MINUTES`` (``processing.counters``), so the rows dropped can never be it;
- **rack windows**: the rack's stored ``rack_windows_1m`` state (``last_epoch``, ``last_seq``,
  ``seu_count_last``, ``seu_inc``, ``coverage``) of the span before its newest window.

A rack enters the tips after a batch that read its state from the tables (the first batch of this
process, or one with late frames, which takes the exact recompute and evicts the rack: the windows it
rewrote are then re-read once). Racks whose newest window is older than the span before the stream's newest
are dropped: their next frames need nothing the tips would hold. So the tips hold at most every rack's
span of narrow rows (10,000 racks: about 1.3 M GPU and 0.7 M rack rows). They change only when the batch's
transaction commits, and a crash loses nothing: the stored windows are the state, and a new process
starts with no tips.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from processing.counters import HORIZON_MINUTES
from processing.rollups import GPU_COUNTERS, GPU_KEY

GPU_STATE_COLUMNS = ["last_epoch", "last_seq", "window_start", "rack_id", "node", "gpu"] + [
    f"{c}_last" for c in GPU_COUNTERS
]
RACK_STATE_COLUMNS = ["last_epoch", "last_seq", "window_start", "rack_id", "seu_count_last", "seu_inc", "coverage"]
_GPU_WINDOW = [*GPU_KEY, "window_start"]
_RACK_WINDOW = ["rack_id", "window_start"]


@dataclass(frozen=True, slots=True)
class WindowTips:
    """The tips of the racks in memory (immutable: a batch builds the next tips, kept if it commits)."""

    gpu: pl.DataFrame
    """Compacted GPU lookback rows (``GPU_STATE_COLUMNS``)."""
    rack: pl.DataFrame
    """Rack windows of the SEU span before each rack's newest (``RACK_STATE_COLUMNS``)."""
    span_minutes: int

    @classmethod
    def empty(cls, span_minutes: int) -> WindowTips:
        """No rack in memory."""
        return cls(pl.DataFrame(), pl.DataFrame(), span_minutes)

    def racks(self) -> pl.DataFrame:
        """The racks held (``rack_id``)."""
        if self.rack.is_empty():
            return pl.DataFrame(schema={"rack_id": pl.String})
        return self.rack.select("rack_id").unique()

    def gpu_state(self, touched: pl.DataFrame) -> pl.DataFrame:
        """GPU lookback rows of ``touched``'s racks (all held) in the horizon before their first touched
        window, outside the touched windows (the stored touched windows are read with the batch)."""
        return _before(self.gpu, touched, HORIZON_MINUTES, _GPU_WINDOW)

    def rack_state(self, touched: pl.DataFrame) -> pl.DataFrame:
        """Rack windows of ``touched``'s racks in the span before their first touched window, outside the
        touched windows: what ``gpu_state`` reads from ``rack_windows_1m`` for a rack that is not held."""
        return _before(self.rack, touched, self.span_minutes, _RACK_WINDOW)

    def after(
        self, merged: pl.DataFrame, read: tuple[pl.DataFrame, pl.DataFrame], out: tuple[pl.DataFrame, pl.DataFrame]
    ) -> WindowTips:
        """The tips once a batch committed: ``merged`` racks (``rack_id``; merged in order) take their new
        windows ``out`` (GPU and rack windows as stored); those not held yet start from ``read`` (their state
        read from the tables for this batch); every other rack of the batch is evicted by the caller
        (``without``). Racks beyond the span of the stream's newest window are dropped."""
        gpu_out, rack_out = (o.join(merged, on="rack_id", how="semi") for o in out)
        held = self.racks()
        fresh = merged.join(held, on="rack_id", how="anti")
        gpu = _gpu_tips([_of(self.gpu, merged), _of(read[0], fresh)], gpu_out)
        rack = _spanned(
            _stacked([_of(self.rack, merged), _of(read[1], fresh), rack_out], RACK_STATE_COLUMNS), self.span_minutes
        )
        kept = self.without(merged)
        tips = WindowTips(
            _stacked([kept.gpu, gpu], GPU_STATE_COLUMNS),
            _stacked([kept.rack, rack], RACK_STATE_COLUMNS),
            self.span_minutes,
        )
        return tips.recent()

    def without(self, racks: pl.DataFrame) -> WindowTips:
        """The tips without ``racks`` (``rack_id``)."""
        if self.rack.is_empty():
            return self
        return WindowTips(_not_of(self.gpu, racks), _not_of(self.rack, racks), self.span_minutes)

    def recent(self) -> WindowTips:
        """The tips without the racks whose newest window is more than the span before the newest of all."""
        if self.rack.is_empty():
            return self
        newest = self.rack["window_start"].max()
        cutoff = pl.lit(newest) - timedelta(minutes=self.span_minutes)
        stale = self.rack.group_by("rack_id").agg(pl.col("window_start").max()).filter(pl.col("window_start") < cutoff)
        return self if stale.is_empty() else self.without(stale.select("rack_id"))


def _of(rows: pl.DataFrame, racks: pl.DataFrame) -> pl.DataFrame:
    """``rows`` of ``racks`` (``rows`` may be the column-less empty frame)."""
    return rows.join(racks, on="rack_id", how="semi") if not rows.is_empty() else rows


def _not_of(rows: pl.DataFrame, racks: pl.DataFrame) -> pl.DataFrame:
    """``rows`` of other racks than ``racks`` (``rows`` may be the column-less empty frame)."""
    return rows.join(racks, on="rack_id", how="anti") if not rows.is_empty() else rows


def _stacked(frames: list[pl.DataFrame], columns: list[str]) -> pl.DataFrame:
    """The non-empty ``frames``' ``columns`` stacked in order (the column-less empty frame when none)."""
    used = [f.select(columns) for f in frames if not f.is_empty()]
    return pl.concat(used, how="vertical_relaxed") if used else pl.DataFrame()


def _before(rows: pl.DataFrame, touched: pl.DataFrame, minutes: int, window_key: list[str]) -> pl.DataFrame:
    """``rows`` of ``touched``'s racks from ``minutes`` before each rack's first touched window, not touched."""
    if rows.is_empty():
        return rows
    first = touched.group_by("rack_id").agg(pl.col("window_start").min().alias("_first"))
    return (
        rows.join(first, on="rack_id", how="inner")
        .filter(pl.col("window_start") >= pl.col("_first") - timedelta(minutes=minutes))
        .drop("_first")
        .join(touched.select(_RACK_WINDOW), on=_RACK_WINDOW, how="anti")
    )


def _gpu_tips(earlier: list[pl.DataFrame], out: pl.DataFrame) -> pl.DataFrame:
    """The compacted GPU rows from ``earlier`` rows and the batch's new windows ``out``. A GPU whose newest
    new window holds every counter (the usual case) has that row alone; the rest are compacted in full."""
    if out.is_empty():
        return _compacted(_stacked(earlier, GPU_STATE_COLUMNS))
    newest = out.select(GPU_STATE_COLUMNS).sort("window_start").unique(GPU_KEY, keep="last")
    complete = newest.filter(pl.all_horizontal(pl.col(f"{c}_last").is_not_null() for c in GPU_COUNTERS))
    if complete.height == newest.height and all(e.is_empty() for e in earlier):
        return complete
    others = [p.join(complete, on=GPU_KEY, how="anti") for p in [*earlier, out] if not p.is_empty()]
    return _stacked([complete, _compacted(_stacked(others, GPU_STATE_COLUMNS))], GPU_STATE_COLUMNS)


def _compacted(rows: pl.DataFrame) -> pl.DataFrame:
    """Per GPU, one row per window (the newest state of a window wins), then only the rows a later
    in-order reading can start from: the newest, and the newest of its epoch and horizon holding each
    counter that the newest lacks."""
    if rows.is_empty():
        return rows
    order = [*GPU_KEY, "window_start"]
    rows = rows.unique(subset=_GPU_WINDOW, keep="last", maintain_order=True).sort(order)
    newest = pl.col("window_start").max().over(GPU_KEY)
    epoch = pl.col("last_epoch").last().over(GPU_KEY)
    candidates = rows.filter(
        (pl.col("last_epoch") == epoch) & (pl.col("window_start") >= newest - timedelta(minutes=HORIZON_MINUTES))
    )
    is_newest = pl.col("window_start") == pl.col("window_start").max().over(GPU_KEY)
    last_holding = [
        pl.col(f"{c}_last").is_not_null() & (pl.col(f"{c}_last").is_not_null().cum_sum(reverse=True).over(GPU_KEY) == 1)
        for c in GPU_COUNTERS
    ]
    return candidates.filter(is_newest | pl.any_horizontal(last_holding))


def _spanned(rows: pl.DataFrame, span_minutes: int) -> pl.DataFrame:
    """Per rack, one row per window (the newest wins), within the span before the rack's newest."""
    if rows.is_empty():
        return rows
    rows = rows.unique(subset=_RACK_WINDOW, keep="last", maintain_order=True).sort(_RACK_WINDOW)
    newest = pl.col("window_start").max().over("rack_id")
    return rows.filter(pl.col("window_start") >= newest - timedelta(minutes=span_minutes))
