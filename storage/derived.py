"""Derived tables, kept in the batch's own transaction: windows, tenant usage, gaps, link state, health now.

``HistoryWriter.write`` calls, inside the transaction of a batch:

1. ``before_insert`` (reads, before the raw rows go in): **which windows** the batch touches (the minutes
   of its frames and, for *late* frames, sampled before the newest frame stored for their rack, every
   stored minute of the rack within the counter horizon after them, whose increments may now start from
   the late frame: ``processing.counters``). It sorts the batch's racks in two: racks **in order** (every
   offered frame after every stored one, the live case) and the rest. For racks in order it reads only
   the touched windows' stored rows (``gpu_windows_1m``, ``tenant_minutes``), never their raw samples, and
   takes their lookback state (each GPU's last counter readings, the rack minutes the SEU norm needs)
   from the **tips** held in memory (``processing.tips``), reading it from the window tables only for a
   rack not held (after a restart, or after a late frame). For the other racks it reads the rows already
   stored in the touched minutes and the lookback state from the window tables; after late frames, the
   stored minutes whose norm moves too. Everything read is bounded by the batch's minutes and fixed spans
   around them, one statement per cluster of minutes, and DuckDB prunes row groups by time (zone maps),
   so the cost follows the batch, not the length of the history.
2. ``compute`` (pure polars, no database): the touched windows, **merged** for racks in order (their new
   rows fold into the stored windows: ``processing.merge``) and **recomputed from all their rows** for the
   rest (``processing.windows``); GPU, node and rack health in event time, tenant usage; the tips as they
   will be once the batch commits. The daemon runs it on its main thread while the writer thread inserts
   the raw rows.
3. ``after_insert``: **replace** those minutes' rows in ``gpu_windows_1m``, ``rack_windows_1m`` and
   ``tenant_minutes``, except the newest minute of each rack on the fast path, which is **held** in memory and
   written once it closes (``storage.open_windows``, with ``hold``); fold the new frames into the **gaps** and
   sequence bounds (``processing.gaps``) and each rack's **link state** (``processing.passes``); judge every
   rack **now**, as of the ground's clock (the newest Kafka timestamp stored), from its newest window
   (``processing.health.judge_now``); append each change of state to ``rack_health_log``, the record of what
   the ground knew at each moment; roll the hours that settled into the hourly rollups ``gpu_ecc_hours`` and
   ``tenant_hours`` (windows replaced in hours already rolled are accounted there as they are written:
   ``storage.hourly``).

Small per-rack state (sequence bounds, open gaps, link state, health now) is cached in memory and written
through: this process is the file's only writer, and a rolled-back transaction discards its changes. The
tips are a cache of stored window rows, replaced only when the batch commits: a crash or a rollback loses
nothing, because the window tables are the state and the tips are rebuilt from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from processing.counters import HORIZON_MINUTES
from processing.gaps import GAP_SCHEMA, seq_bounds, update_gaps
from processing.health import HEALTH_COLUMNS, NOW_COLUMNS, HealthThresholds, judge_now
from processing.merge import fold_windows
from processing.passes import LINK_SCHEMA, ContactModel, contact_at, update_link_state
from processing.rollups import GPU_COUNTERS
from processing.rows import FRAME_KEY
from processing.tips import WindowTips
from processing.windows import WINDOW_KEY, WindowTables, compute_windows, judge_racks
from storage.database import insert_rows, table_columns
from storage.open_windows import KEY_SCHEMA, HeldWindows
from storage.rollups import open_rollups
from storage.tables import GPU_WINDOWS_1M, RACK_WINDOWS_1M, TENANT_MINUTES

_MINUTE = timedelta(minutes=1)
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
_UTC = pl.Datetime("us", "UTC")


@dataclass(frozen=True, slots=True)
class StoredBefore:
    """What ``before_insert`` found: the windows a batch touches and their rows already stored."""

    touched: pl.DataFrame
    late: pl.DataFrame
    keys: pl.DataFrame
    bounds: pl.DataFrame
    samples: pl.DataFrame
    frames: pl.DataFrame
    gpu_state: pl.DataFrame
    earlier: pl.DataFrame
    later: pl.DataFrame
    later_context: pl.DataFrame
    merging: pl.DataFrame
    """Racks whose offered frames all follow their stored ones: their windows are merged, not recomputed."""
    gpu_windows: pl.DataFrame
    """The merging racks' stored GPU windows of the touched minutes (instead of their raw samples)."""
    tenants: pl.DataFrame
    """The merging racks' stored tenant minutes of the touched minutes."""
    read: tuple[pl.DataFrame, pl.DataFrame]
    """The GPU and rack state read from the tables (for racks not held in the tips)."""
    fast: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"rack_id": pl.String()}))
    """Merging racks held in the tips: their newest minute may be held (``storage.open_windows``)."""
    merged_stored: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=KEY_SCHEMA))
    """The merging racks' touched windows, and whether a version of each may be stored."""
    closing: HeldWindows | None = None
    """Held windows of the fast racks that this batch does not touch: closed, written by ``after_insert``."""

    @classmethod
    def nothing(cls) -> StoredBefore:
        """For an empty batch."""
        e = pl.DataFrame()
        return cls(e, e, e, e, e, e, e, e, e, e, e, e, e, (e, e))

    def new_rows(self, rack_rows: pl.DataFrame, gpu_rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The batch's frames and samples that are not stored yet: a stored copy of a frame lies in its
        own window, so the stored rows of the touched windows tell (the insert confirms it)."""
        if self.frames.is_empty():
            return rack_rows, gpu_rows
        stored = self.frames.select(FRAME_KEY)
        new_frames = rack_rows.join(stored, on=FRAME_KEY, how="anti")
        if new_frames.height == rack_rows.height:  # the usual case: no copy of a stored frame
            return rack_rows, gpu_rows
        return new_frames, gpu_rows.join(stored, on=FRAME_KEY, how="anti")


@dataclass(frozen=True, slots=True)
class DerivedRows:
    """The recomputed rows, ready to replace the touched windows (and re-judged later windows)."""

    gpu: pl.DataFrame
    rack: pl.DataFrame
    tenants: pl.DataFrame
    later: pl.DataFrame
    new_frames: int
    tips: WindowTips
    """The tips once this batch commits."""


@dataclass(frozen=True, slots=True)
class DerivedUpdate:
    """What one update recomputed."""

    windows: int
    rejudged: int
    gaps_open: int
    health_changes: int


MERGE_GAP = timedelta(minutes=30)


def _ranges(windows: pl.DataFrame, before: timedelta, after: timedelta) -> list[tuple[datetime, datetime]]:
    """The time ranges ``[w - before, w + after]`` around ``windows``' starts, overlapping ones merged.

    Every read and delete is bounded by these ranges, one statement per range, so DuckDB's zone maps
    skip the history between two clusters of touched minutes (a batch mixing one rack's playback from
    hours ago with other racks' live frames must not scan the hours in between). Ranges closer than
    ``MERGE_GAP`` are merged: a little more scanning is cheaper than another statement.
    """
    starts = windows["window_start"].unique().sort().to_list()
    merged: list[tuple[datetime, datetime]] = []
    for start in starts:
        low, high = start - before, start + after
        if merged and low - merged[-1][1] <= MERGE_GAP:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _with_held(read: pl.DataFrame, held: pl.DataFrame) -> pl.DataFrame:
    """State read from the tables followed by the state held in the tips (in the read's schema)."""
    return read if held.is_empty() else pl.concat([read, held.select(read.columns).cast(read.schema)])


def _earliest(rows: pl.DataFrame) -> datetime:
    """The earliest ``window_start`` of ``rows`` (the end of time for none)."""
    earliest = rows["window_start"].min() if not rows.is_empty() else None
    return earliest if isinstance(earliest, datetime) else datetime.max.replace(tzinfo=UTC)


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    """DuckDB hands TIMESTAMPTZ out as Etc/UTC; the processing functions use UTC."""
    zoned = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone is not None]
    return frame.with_columns(pl.col(n).dt.convert_time_zone("UTC") for n in zoned) if zoned else frame


class DerivedTables:
    """Reads and replaces the derived tables on the writer's connection, inside its open transaction."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        thresholds: HealthThresholds | None = None,
        contact: ContactModel | None = None,
        hold: timedelta | None = None,
    ) -> None:
        """``hold``: how long the open minute of a rack in order may stay in memory before it is written
        (``storage.open_windows``); None writes every touched window in every batch."""
        self._con = con
        self.thresholds = thresholds or HealthThresholds()
        self.contact = contact or ContactModel()
        self._columns = {t.name: list(t.names) for t in (GPU_WINDOWS_1M, RACK_WINDOWS_1M, TENANT_MINUTES)}
        self._raw_columns = {  # the raw columns the recompute reads (not the Kafka bookkeeping)
            t: [c for c in table_columns(con, t) if c not in _RAW_SKIP] for t in ("gpu_samples", "rack_frames")
        }
        # Small per-rack state, cached (this process is the file's only writer) and written through;
        # a transaction's changes are kept aside until it commits (``committed``/``rolled_back``).
        self._state = {name: self._query(f"SELECT * FROM {name}") for name in _STATE_TABLES}
        self._state["rack_link"] = self._state["rack_link"].select(list(LINK_SCHEMA)).cast(LINK_SCHEMA)  # type: ignore[arg-type]
        self._pending: dict[str, pl.DataFrame] = {}
        self._tips = WindowTips.empty(self._seu_span())
        self._pending_tips: WindowTips | None = None
        self.hold = hold
        self._held = HeldWindows.empty()
        self._pending_held: HeldWindows | None = None
        self._written_at: datetime | None = None
        """When every held window was last written (the ``hold`` clock), and its value in the open batch."""
        self._pending_written_at: datetime | None = None
        self.last_now: pl.DataFrame = pl.DataFrame()
        """The latest "now" judgement (``NOW_COLUMNS``), for alert rules of scope ``rack_now``."""
        self.rollups = open_rollups(con)
        """The rollups by source table, rolled and accounted as its windows are written (``storage.hourly``)."""

    def committed(self) -> None:
        """The writer committed: the state changed in its transaction becomes the state."""
        self._state.update(self._pending)
        self._pending = {}
        if self._pending_tips is not None:
            self._tips, self._pending_tips = self._pending_tips, None
        if self._pending_held is not None:
            self._held, self._pending_held = self._pending_held, None
        if self._pending_written_at is not None:
            self._written_at, self._pending_written_at = self._pending_written_at, None
        for rollups in self.rollups.values():
            for rollup in rollups:
                rollup.committed()

    def rolled_back(self) -> None:
        """The writer rolled back: forget the state changed in its transaction."""
        for rollups in self.rollups.values():
            for rollup in rollups:
                rollup.rolled_back()
        self._pending = {}
        self._pending_tips = None
        self._pending_held = None
        self._pending_written_at = None

    @property
    def held(self) -> HeldWindows:
        """The open minutes held in memory, as of the open transaction."""
        return self._pending_held if self._pending_held is not None else self._held

    def _current(self, name: str) -> pl.DataFrame:
        return self._pending.get(name, self._state[name])

    def _rewrite(self, name: str, rows: pl.DataFrame) -> None:
        """Replace a small state table whole (a few rows per rack and epoch)."""
        self._con.execute(f"DELETE FROM {name}")
        insert_rows(self._con, name, list(rows.columns), rows)
        self._pending[name] = rows

    # -- reading ------------------------------------------------------------------------------------

    def _query(self, sql: str, params: list[object] | None = None, **frames: pl.DataFrame) -> pl.DataFrame:
        for name, frame in frames.items():
            self._con.register(name, frame)
        try:
            return _utc(self._con.sql(sql, params=params).pl())
        finally:
            for name in frames:
                self._con.unregister(name)

    def _in_ranges(self, sql: str, ranges: list[tuple[datetime, datetime]], **frames: pl.DataFrame) -> pl.DataFrame:
        """``sql`` (with ``?`` for a range's low and high) once per range, results concatenated."""
        # No range: one empty one, so the answer still has its columns (zone maps skip every row group).
        parts = [self._query(sql, [low, high], **frames) for low, high in ranges or [(_NEVER, _NEVER)]]
        return pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]

    def _rows_of_windows(self, table: str, windows: pl.DataFrame) -> pl.DataFrame:
        """Every stored row of ``table`` (``gpu_samples``/``rack_frames``) sampled in ``windows``' minutes."""
        columns = ", ".join(f"s.{c}" for c in self._raw_columns[table])
        return self._in_ranges(
            f"""SELECT {columns} FROM {table} s SEMI JOIN wanted w
                ON s.rack_id = w.rack_id AND s.sampled_at >= w.window_start
                AND s.sampled_at < w.window_start + INTERVAL 1 MINUTE
            WHERE s.sampled_at >= ? AND s.sampled_at < ?""",
            _ranges(windows, timedelta(0), _MINUTE),
            wanted=windows,
        )

    def _stored_windows(self, table: str, windows: pl.DataFrame) -> pl.DataFrame:
        """The stored rows of a derived window table (``gpu_windows_1m``, ``tenant_minutes``) in ``windows``."""
        return self._in_ranges(
            f"""SELECT s.* FROM {table} s SEMI JOIN wanted w
                ON s.rack_id = w.rack_id AND s.window_start = w.window_start
            WHERE s.window_start >= ? AND s.window_start <= ?""",
            _ranges(windows, timedelta(0), timedelta(0)),
            wanted=windows,
        ).drop("computed_at", strict=False)

    def _windows_before(self, table: str, columns: str, windows: pl.DataFrame, minutes: int) -> pl.DataFrame:
        """Stored rows of ``table`` in the ``minutes`` before each window, excluding the windows themselves."""
        return self._in_ranges(
            f"""SELECT {columns} FROM {table} s
            WHERE s.window_start >= ? AND s.window_start < ?
            AND EXISTS (SELECT 1 FROM wanted w WHERE w.rack_id = s.rack_id
                AND s.window_start >= w.window_start - INTERVAL {int(minutes)} MINUTE
                AND s.window_start < w.window_start)
            AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.rack_id = s.rack_id AND w.window_start = s.window_start)""",
            _ranges(windows, timedelta(minutes=minutes), timedelta(0)),
            wanted=windows,
        )

    def stored_windows_before(self, table: str, windows: pl.DataFrame, minutes: int) -> pl.DataFrame:
        """Every column of ``table``'s stored windows in the ``minutes`` before ``windows`` (not them)."""
        return self._windows_before(table, "s.*", windows, minutes).drop("computed_at", strict=False)

    def _following_windows(self, late: pl.DataFrame) -> pl.DataFrame:
        """The rack's stored windows within the counter horizon after each late frame's window.

        A late frame becomes the previous reading of the next readable sample of each GPU: usually in the
        next stored minute, later when a GPU was missing from frames or its counter unreadable, but
        always within the horizon. Recomputing every stored minute of the horizon is exact.
        """
        return self._in_ranges(
            f"""SELECT DISTINCT s.rack_id, s.window_start FROM rack_windows_1m s
            WHERE s.window_start > ? AND s.window_start <= ?
            AND EXISTS (SELECT 1 FROM late l WHERE l.rack_id = s.rack_id AND s.window_start > l.window_start
                AND s.window_start <= l.window_start + INTERVAL {HORIZON_MINUTES} MINUTE)""",
            _ranges(late, timedelta(0), timedelta(minutes=HORIZON_MINUTES)),
            late=late,
        )

    # -- the update ---------------------------------------------------------------------------------

    def before_insert(self, offered: pl.DataFrame) -> StoredBefore:
        """Before a batch's rows are inserted: the windows it touches and what is stored in them.

        ``offered`` are the batch's frames (duplicates of stored frames included: their windows are
        recomputed for nothing, which is harmless). Reading the windows' stored rows *before* inserting
        means the batch's own rows need not be read back.
        """
        if offered.is_empty():
            return StoredBefore.nothing()
        keys = offered.select("rack_id", "boot_epoch").unique()
        bounds = self._current("seq_bounds").join(keys, on=["rack_id", "boot_epoch"], how="semi")
        seen = self._current("rack_link").select("rack_id", "last_sampled_at")
        late = self._late_windows(offered, seen)
        merging = self._merging_racks(offered, late)
        fast = merging.join(self._tips.racks(), on="rack_id", how="semi")
        # The held minutes of racks off the fast path are written first: every read below sees them.
        self._write_held(self.held.of_racks(offered.select("rack_id").unique().join(fast, on="rack_id", how="anti")))
        touched = self._touched_windows(offered, late)
        # The state of racks held in the tips comes from memory; the others' is read from the tables.
        held = touched.join(fast, on="rack_id", how="semi")
        unheld = touched.join(held, on=WINDOW_KEY, how="anti")
        state_columns = "last_epoch, last_seq, window_start, rack_id"
        gpu_read = self._windows_before(
            "gpu_windows_1m",
            f"{state_columns}, node, gpu, " + ", ".join(f"{c}_last" for c in GPU_COUNTERS),
            unheld,
            HORIZON_MINUTES,
        )
        # One read of the rack's earlier minutes serves both the counter lookback (10 minutes; older rows
        # are ignored by the horizon rule) and the SEU norm (70 minutes).
        span = self._seu_span()
        rack_read = self._windows_before(
            "rack_windows_1m", f"{state_columns}, seu_count_last, seu_inc, coverage", unheld, span
        )
        gpu_state = _with_held(gpu_read, self._tips.gpu_state(held))
        earlier = _with_held(rack_read, self._tips.rack_state(held))
        # Only late frames leave stored windows after the recomputed ones (whose SEU norm may move).
        later = self._later_windows(touched, span) if not late.is_empty() else pl.DataFrame()
        context = (
            self._windows_before("rack_windows_1m", "rack_id, window_start, seu_inc, coverage", later, span)
            if not later.is_empty()
            else pl.DataFrame()
        )
        merged = touched.join(merging, on="rack_id", how="semi")
        gpu_windows, tenants, merged_stored = self._merged_windows(merged, seen)
        return StoredBefore(
            touched=touched,
            late=late,
            keys=keys,
            bounds=bounds,
            samples=self._rows_of_windows("gpu_samples", touched.join(merging, on="rack_id", how="anti")),
            frames=self._rows_of_windows("rack_frames", touched),
            gpu_state=gpu_state,
            earlier=earlier,
            later=later,
            later_context=context,
            merging=merging,
            gpu_windows=gpu_windows,
            tenants=tenants,
            read=(gpu_read, rack_read),
            fast=fast,
            merged_stored=merged_stored,
            closing=self.held.of_racks(fast).without_windows(touched),
        )

    def recover_open_minutes(self, now: datetime) -> int:
        """Recompute each rack's newest minute whose stored windows miss some of its stored frames.

        Only a held minute (``storage.open_windows``) can: after a crash, its frames are stored with their
        offsets but its windows were not written, or written before its last frames. Their frames are
        counted against ``rack_windows_1m.frames`` and the stale minutes recomputed from their raw rows (the
        exact path of late frames); in the open transaction. Returns how many minutes were recomputed.
        """
        link = self._current("rack_link")
        if link.is_empty():
            return 0
        newest = link.select("rack_id", pl.col("last_sampled_at").dt.truncate("1m").alias("window_start"))
        stale = self._in_ranges(
            """WITH counted AS (
                SELECT f.rack_id, n.window_start, count(*) AS frames FROM rack_frames f JOIN newest n
                ON f.rack_id = n.rack_id AND f.sampled_at >= n.window_start
                AND f.sampled_at < n.window_start + INTERVAL 1 MINUTE
                WHERE f.sampled_at >= $1 AND f.sampled_at < $2 + INTERVAL 1 MINUTE GROUP BY ALL)
            SELECT c.rack_id, c.window_start FROM counted c LEFT JOIN
                (SELECT rack_id, window_start, frames FROM rack_windows_1m
                WHERE window_start >= $1 AND window_start <= $2) r
                ON r.rack_id = c.rack_id AND r.window_start = c.window_start
            WHERE r.frames IS DISTINCT FROM c.frames""",
            _ranges(newest, timedelta(0), timedelta(0)),
            newest=newest,
        )
        if stale.is_empty():
            return 0
        offered = self._rows_of_windows("rack_frames", stale)
        before = self.before_insert(offered)
        rows = self.compute(before, offered.clear(), before.samples.clear())
        self._write_windows(before.touched, rows.gpu, rows.rack, rows.tenants, now)
        self._pending_tips = rows.tips
        return stale.height

    def _merged_windows(
        self, merged: pl.DataFrame, seen: pl.DataFrame
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """The merging racks' GPU windows and tenant minutes of ``merged`` as stored or held, and which of
        ``merged`` may have a stored version (``KEY_SCHEMA``).

        A merging rack's offered frames all follow its stored ones, so of the minutes not held only the one
        of its newest stored frame (``rack_link.last_sampled_at``) and earlier ones can be stored: the
        newer minutes are not read.
        """
        held = self.held.of_windows(merged)
        rest = merged.join(held.keys, on=WINDOW_KEY, how="anti")
        newest = pl.col("last_sampled_at").dt.truncate("1m")
        maybe = rest.join(seen, on="rack_id", how="inner").filter(pl.col("window_start") <= newest).select(WINDOW_KEY)
        gpu = self._stored_windows("gpu_windows_1m", maybe)
        tenants = self._stored_windows("tenant_minutes", maybe)
        if held.count:
            gpu = pl.concat([gpu, held.gpu.select(gpu.columns).cast(gpu.schema)])
            tenants = pl.concat([tenants, held.tenants.select(tenants.columns).cast(tenants.schema)])
        flags = pl.concat(
            [
                held.keys,
                maybe.with_columns(pl.lit(True).alias("stored")).cast(KEY_SCHEMA),  # type: ignore[arg-type]
                rest.join(maybe, on=WINDOW_KEY, how="anti")
                .with_columns(pl.lit(False).alias("stored"))
                .cast(KEY_SCHEMA),  # type: ignore[arg-type]
            ]
        )
        return gpu, tenants, flags

    def _write_held(self, windows: HeldWindows) -> int:
        """Write ``windows`` (held) to the window tables, replacing their stored versions; no longer held."""
        if not windows.count:
            return 0
        gone = windows.keys.filter("stored")
        self._write_windows(gone, windows.gpu, windows.rack, windows.tenants, datetime.now(UTC))
        self._pending_held = self.held.without_windows(windows.keys)
        return windows.count

    def _write_windows(
        self, gone: pl.DataFrame, gpu: pl.DataFrame, rack: pl.DataFrame, tenants: pl.DataFrame, now: datetime
    ) -> None:
        """Delete ``gone``'s windows (``WINDOW_KEY``) from the three window tables and insert these rows (the
        GPU and rack rows stamped ``computed_at`` = ``now``)."""
        stamp = pl.lit(now, _UTC).alias("computed_at")
        self._replace("gpu_windows_1m", gone, gpu.with_columns(stamp))
        self._replace("rack_windows_1m", gone, rack.with_columns(stamp))
        self._replace("tenant_minutes", gone, tenants)

    def write_held(self, now: datetime) -> int:
        """Write every held window (the ``hold`` clock restarts at ``now``); in the open transaction."""
        self._pending_written_at = now
        return self._write_held(self.held)

    def _merging_racks(self, offered: pl.DataFrame, late: pl.DataFrame) -> pl.DataFrame:
        """The racks whose offered frames all come after every frame stored for them in ``(boot_epoch,
        frame_seq)`` order and sampled after the newest (the live case): their new rows fold into the stored
        windows (``processing.merge``). Any other rack's windows are recomputed from their raw rows."""
        newest = (
            self._current("seq_bounds")
            .sort("boot_epoch")
            .group_by("rack_id")
            .agg(pl.col("boot_epoch").last().alias("_epoch"), pl.col("max_seq").last().alias("_seq"))
        )
        behind = (pl.col("boot_epoch") < pl.col("_epoch")) | (
            (pl.col("boot_epoch") == pl.col("_epoch")) & (pl.col("frame_seq") <= pl.col("_seq"))
        )
        not_after = offered.join(newest, on="rack_id", how="inner").filter(behind).select("rack_id")
        racks = offered.select("rack_id").unique()
        return racks.join(pl.concat([late.select("rack_id"), not_after]), on="rack_id", how="anti").sort("rack_id")

    def _seu_span(self) -> int:
        return max(self.thresholds.seu_baseline_windows + self.thresholds.seu_recent_windows, HORIZON_MINUTES)

    def compute(self, before: StoredBefore, new_frames: pl.DataFrame, new_samples: pl.DataFrame) -> DerivedRows:
        """Recompute the touched windows from their stored and new rows: pure polars, no database.

        The daemon runs this on its main thread while the writer thread inserts the batch's raw rows.
        """
        frames = pl.concat([before.frames, new_frames.select(before.frames.columns)], how="vertical_relaxed")
        tables = self._windows(before, frames, new_samples.select(before.samples.columns))
        racks = judge_racks(tables.rack, before.earlier, self.thresholds)
        later = before.later
        if not later.is_empty():
            # The later windows' norm is learnt from windows that include the ones just recomputed.
            context = pl.concat(
                [
                    before.later_context.join(before.touched, on=WINDOW_KEY, how="anti"),
                    racks.select(before.later_context.columns),
                ],
                how="vertical_relaxed",
            )
            later = judge_racks(later.drop(HEALTH_COLUMNS, "computed_at"), context, self.thresholds)
        # Pure polars too: the tips are built here, off the writer's critical path (see processing.tips).
        recomputed = before.keys.join(before.merging, on="rack_id", how="anti")
        tips = self._tips.without(recomputed).after(before.merging, before.read, (tables.gpu, racks))
        return DerivedRows(tables.gpu, racks, tables.tenants, later, new_frames.height, tips)

    def _windows(self, before: StoredBefore, frames: pl.DataFrame, new_samples: pl.DataFrame) -> WindowTables:
        """The touched windows: merged for the racks in order, recomputed from all raw rows for the rest."""
        merging, t = before.merging, self.thresholds
        if merging.is_empty():
            samples = pl.concat([before.samples, new_samples], how="vertical_relaxed")
            return compute_windows(samples, frames, before.gpu_state, before.earlier, t)
        parts = [
            fold_windows(
                before.gpu_windows,
                before.tenants,
                new_samples.join(merging, on="rack_id", how="semi"),
                frames.join(merging, on="rack_id", how="semi"),
                before.gpu_state,
                before.earlier,
                t,
            )
        ]
        if before.touched.join(merging, on="rack_id", how="anti").height:
            samples = pl.concat(
                [before.samples, new_samples.join(merging, on="rack_id", how="anti")], how="vertical_relaxed"
            )
            rest = frames.join(merging, on="rack_id", how="anti")
            parts.append(compute_windows(samples, rest, before.gpu_state, before.earlier, t))
        if len(parts) == 1:
            return parts[0]
        return WindowTables(
            *(
                pl.concat([getattr(p, name) for p in parts], how="vertical_relaxed")
                for name in ("gpu", "rack", "tenants")
            )
        )

    def after_insert(
        self,
        before: StoredBefore,
        rows: DerivedRows | None,
        new_frames: pl.DataFrame,
        as_of: datetime | None,
        now: datetime,
    ) -> DerivedUpdate:
        """Replace the touched windows with ``rows`` (``compute``'s), fold the new frames into gaps and link
        state, and judge "now" when due; in the open transaction, after the raw rows were inserted."""
        windows = rejudged = gaps_open = 0
        if not new_frames.is_empty() and rows is not None:
            windows, rejudged = before.touched.height, rows.later.height
            stamp = pl.lit(now).alias("computed_at")
            self._store_windows(before, rows, now)
            if not rows.later.is_empty():
                self._replace("rack_windows_1m", rows.later.select(WINDOW_KEY), rows.later.with_columns(stamp))
            self._pending_tips = rows.tips
            if not rows.gpu.is_empty():
                newest = rows.gpu["window_start"].max()
                assert isinstance(newest, datetime)
                for rollups in self.rollups.values():
                    for rollup in rollups:
                        rollup.roll(newest)
            gaps_open = self._update_gaps(new_frames, before.keys, before.bounds, now)
            self._update_link(new_frames)
        changes = self.refresh_now(as_of, now, rows) if as_of is not None else 0
        return DerivedUpdate(windows, rejudged, gaps_open, changes)

    def _store_windows(self, before: StoredBefore, rows: DerivedRows, now: datetime) -> None:
        """Write the touched windows, except the fast racks' newest minutes, which are held
        (``storage.open_windows``); write the held minutes this batch closed, and all when ``hold`` is due."""
        if before.closing is not None:
            self._write_held(before.closing)
        kept = HeldWindows.empty()
        if self.hold is not None and not before.fast.is_empty():
            newest = (
                before.touched.join(before.fast, on="rack_id", how="semi")
                .group_by("rack_id")
                .agg(pl.col("window_start").max())
            )
            keys = before.merged_stored.join(newest, on=WINDOW_KEY, how="semi")
            gpu, rack, tenants = (
                r.join(newest, on=WINDOW_KEY, how="semi") for r in (rows.gpu, rows.rack, rows.tenants)
            )
            kept = HeldWindows.of(gpu, rack, tenants, keys)
        # Of the merging racks' windows, only those that may have a stored version are deleted first.
        fresh = before.merged_stored.filter(~pl.col("stored"))
        gone = before.touched.join(kept.keys, on=WINDOW_KEY, how="anti").join(fresh, on=WINDOW_KEY, how="anti")
        gpu, rack, tenants = (
            r.join(kept.keys, on=WINDOW_KEY, how="anti") if kept.count else r
            for r in (rows.gpu, rows.rack, rows.tenants)
        )
        self._write_windows(gone, gpu, rack, tenants, now)
        self._pending_held = self.held.without_racks(before.fast).plus(kept)
        if self.hold is not None:
            written_at = self._pending_written_at or self._written_at
            if written_at is None:
                self._pending_written_at = now  # the hold clock starts
            elif now - written_at >= self.hold:
                self.write_held(now)

    @staticmethod
    def _late_windows(offered: pl.DataFrame, seen: pl.DataFrame) -> pl.DataFrame:
        """Windows of frames sampled before the newest frame already stored for their rack."""
        return (
            offered.join(seen, on="rack_id", how="inner")
            .filter(pl.col("sampled_at") <= pl.col("last_sampled_at"))
            .select("rack_id", pl.col("sampled_at").dt.truncate("1m").alias("window_start"))
            .unique()
        )

    def _touched_windows(self, offered: pl.DataFrame, late: pl.DataFrame) -> pl.DataFrame:
        """The offered frames' windows, and for late ones the rack's next stored window (see the module doc)."""
        own = offered.select("rack_id", pl.col("sampled_at").dt.truncate("1m").alias("window_start")).unique()
        if late.is_empty():
            return own.sort(WINDOW_KEY)
        following = self._following_windows(late)
        return pl.concat([own, following.cast(own.schema)]).unique().sort(WINDOW_KEY)

    def _later_windows(self, touched: pl.DataFrame, span: int) -> pl.DataFrame:
        """Stored rack windows in the ``span`` minutes after a recomputed window, not recomputed themselves."""
        columns = ", ".join(f"s.{c}" for c in self._columns["rack_windows_1m"])
        return self._in_ranges(
            f"""SELECT {columns} FROM rack_windows_1m s
            WHERE s.window_start > ? AND s.window_start <= ?
            AND EXISTS (SELECT 1 FROM wanted w WHERE w.rack_id = s.rack_id
                AND s.window_start > w.window_start AND s.window_start <= w.window_start + INTERVAL {int(span)} MINUTE)
            AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.rack_id = s.rack_id AND w.window_start = s.window_start)""",
            _ranges(touched, timedelta(0), timedelta(minutes=span)),
            wanted=touched,
        )

    def _replace(self, table: str, windows: pl.DataFrame, rows: pl.DataFrame) -> None:
        """Delete ``windows``' rows of ``table`` and insert ``rows`` in their place (windows of buckets a rollup
        covers accounted there)."""
        rollups = self.rollups.get(table, ())
        accounted = ", ".join(dict.fromkeys(c for rollup in rollups for c in rollup.rollup.accounted))
        replaced: list[pl.DataFrame] = []
        self._con.register("gone", windows.select(WINDOW_KEY))
        try:
            for low, high in _ranges(windows, timedelta(0), timedelta(0)):
                delete = f"""DELETE FROM {table} t WHERE t.window_start >= ? AND t.window_start <= ? AND EXISTS
                    (SELECT 1 FROM gone g WHERE g.rack_id = t.rack_id AND g.window_start = t.window_start)"""
                if any(rollup.covers(low) for rollup in rollups):  # the replaced windows are subtracted
                    replaced.append(self._con.sql(f"{delete} RETURNING {accounted}", params=[low, high]).pl())
                else:
                    self._con.execute(delete, [low, high])
        finally:
            self._con.unregister("gone")
        insert_rows(self._con, table, self._columns[table], rows)
        if replaced or any(rollup.covers(_earliest(rows)) for rollup in rollups):
            gone = pl.concat(replaced) if replaced else rows.clear()
            for rollup in rollups:
                rollup.account(gone, rows)

    def _update_gaps(self, new_frames: pl.DataFrame, keys: pl.DataFrame, bounds: pl.DataFrame, now: datetime) -> int:
        """Fold the new frames into the open gaps and sequence bounds of their racks and epochs."""
        key = ["rack_id", "boot_epoch"]
        all_gaps = self._current("open_gaps")
        before = all_gaps.join(keys, on=key, how="semi")
        gaps = update_gaps(before.select(list(GAP_SCHEMA)), new_frames, bounds)
        detected = gaps.join(before.select(*GAP_SCHEMA, "detected_at"), on=list(GAP_SCHEMA), how="left")
        detected = detected.with_columns(pl.col("detected_at").fill_null(pl.lit(now, _UTC)))
        order = [*key, "first_missing"]
        if not gaps.sort(order).equals(before.select(list(GAP_SCHEMA)).sort(order)):  # most batches fill none
            self._replace_keys("open_gaps", keys, detected.select(all_gaps.columns).sort(order))
        self._replace_keys("seq_bounds", keys, seq_bounds(new_frames, bounds))
        return detected.height

    def _replace_keys(self, name: str, keys: pl.DataFrame, rows: pl.DataFrame) -> None:
        """Replace a per-(rack, epoch) state table's rows of ``keys`` with ``rows``, in DuckDB and the cache."""
        key = ["rack_id", "boot_epoch"]
        self._con.register("k", keys.select(key))
        try:
            self._con.execute(
                f"DELETE FROM {name} t WHERE EXISTS (SELECT 1 FROM k WHERE k.rack_id = t.rack_id "
                "AND k.boot_epoch = t.boot_epoch)"
            )
        finally:
            self._con.unregister("k")
        insert_rows(self._con, name, list(rows.columns), rows)
        kept = self._current(name).join(keys, on=key, how="anti")
        self._pending[name] = pl.concat([kept, rows.select(kept.columns)], how="vertical_relaxed")

    def _update_link(self, new_frames: pl.DataFrame) -> None:
        """Fold the new frames into each rack's link state (passes, last frame)."""
        link = self._current("rack_link")
        racks = new_frames.select("rack_id").unique()
        updated = update_link_state(
            link.join(racks, on="rack_id", how="semi"), new_frames, pass_break_s=self.contact.pass_break_s
        )
        self._rewrite("rack_link", pl.concat([link.join(racks, on="rack_id", how="anti"), updated]).sort("rack_id"))

    def refresh_now(self, as_of: datetime, now: datetime, rows: DerivedRows | None = None) -> int:
        """Judge every rack as of ``as_of``; log the racks whose state changed. Returns how many changed.

        Each rack's newest window comes from the cached ``rack_health_now`` and the windows just
        recomputed (``rows``), so judging "now" reads nothing from the history.
        """
        link = self._current("rack_link")
        previous = self._current("rack_health_now")
        latest = self._latest_windows(previous, rows)
        if link.is_empty() or latest.is_empty():
            return 0
        contact = contact_at(link, as_of, self.contact)
        judged = judge_now(latest, contact, self.thresholds).join(
            latest.select("rack_id", pl.col("reasons").alias("last_known_reasons")), on="rack_id"
        )
        changed = judged.join(
            previous.select("rack_id", pl.col("state").alias("before")), on="rack_id", how="left"
        ).filter(pl.col("before").is_null() | (pl.col("before") != pl.col("state")))
        columns = [*NOW_COLUMNS, "last_known_reasons"]
        self._rewrite("rack_health_now", judged.select(columns).cast(previous.schema))
        self.last_now = judged.select(NOW_COLUMNS)
        log = changed.select(
            "rack_id", "as_of", "state", "reasons", "last_window_start", pl.lit(now, _UTC).alias("logged_at")
        )
        insert_rows(self._con, "rack_health_log", list(log.columns), log)
        return changed.height

    @staticmethod
    def _latest_windows(previous: pl.DataFrame, rows: DerivedRows | None) -> pl.DataFrame:
        """Each rack's newest window and its event-time state: the one judged before, or a newer (or the
        same, recomputed) window among ``rows``."""
        columns = ["rack_id", "window_start", "state", "reasons"]
        known = previous.select(
            "rack_id",
            pl.col("last_window_start").alias("window_start"),
            pl.col("last_known_state").alias("state"),
            pl.col("last_known_reasons").alias("reasons"),
            pl.lit(0).alias("_fresh"),
        )
        parts = [known]
        if rows is not None:
            fresh = [r for r in (rows.rack, rows.later) if not r.is_empty()]
            parts += [r.select(columns).with_columns(pl.lit(1).alias("_fresh")) for r in fresh]
        candidates = pl.concat([p for p in parts if not p.is_empty()], how="vertical_relaxed") if parts else known
        return (
            candidates.sort("window_start", "_fresh")
            .group_by("rack_id")
            .agg(pl.all().exclude("_fresh").last())
            .select(columns)
        )


_STATE_TABLES = ("seq_bounds", "open_gaps", "rack_link", "rack_health_now")
_RAW_SKIP = {"ingested_at", "schema_id", "kafka_partition", "kafka_offset", "firmware", "ground_station"}
