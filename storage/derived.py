"""Derived tables, kept in the batch's own transaction: windows, tenant usage, gaps, link state, health now.

After the writer inserted a batch's new frames (duplicates already dropped by the primary key),
``DerivedTables.update`` runs in the same transaction:

1. **Which windows.** The minutes of the new frames, plus, for *late* frames (a ``frame_seq`` below the
   largest already stored for its rack and epoch), the next stored minute of the rack within the counter
   horizon: the next present frame's increment now starts from the late frame (``processing.counters``).
2. **Recompute them from raw rows** (``processing.windows.compute_windows``): every stored row of those
   minutes, plus the ``<counter>_last`` state of the ``HORIZON_MINUTES`` stored minutes before each. The
   rows read are those minutes' and the state is one row per GPU-minute, so the cost follows the batch,
   not the history: DuckDB prunes row groups by ``sampled_at`` (zone maps) before reading.
3. **Rack health in event time** (``judge_racks``), with the rack's SEU norm learnt from its stored
   minutes of the baseline's span. A late minute moves the norm of the minutes after it, so those
   (within the span) are judged again too, from their stored rows.
4. **Replace** those minutes' rows in ``gpu_windows_1m``, ``rack_windows_1m`` and ``tenant_minutes``.
5. **Gaps** (``processing.gaps.update_gaps``) and sequence bounds of the racks and epochs in the batch.
6. **Link state and health now** (``processing.passes``, ``processing.health.judge_now``): each rack's
   passes are folded in, and every rack is judged as of ``as_of`` (the ground's clock: the newest Kafka
   timestamp seen); a change of a rack's state is appended to ``rack_health_log``, the record of what the
   ground knew at each moment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from processing.counters import HORIZON_MINUTES
from processing.gaps import GAP_SCHEMA, seq_bounds, update_gaps
from processing.health import HEALTH_COLUMNS, NOW_COLUMNS, HealthThresholds, judge_now
from processing.passes import LINK_SCHEMA, contact_at, update_link_state
from processing.rollups import GPU_COUNTERS
from processing.windows import WINDOW_KEY, compute_windows, judge_racks

_MINUTE = timedelta(minutes=1)
REFRESH_STREAM = timedelta(minutes=5)
REFRESH_WALL_S = 5.0
_UTC = pl.Datetime("us", "UTC")


@dataclass(frozen=True, slots=True)
class ContactModel:
    """How ground passes are predicted (see ``processing.passes``)."""

    orbit_period_s: float = 5760.0
    pass_break_s: float = 120.0
    tolerance_s: float = 300.0


@dataclass(frozen=True, slots=True)
class StoredBefore:
    """What ``before_insert`` found: the windows a batch touches and their rows already stored."""

    touched: pl.DataFrame
    late: pl.DataFrame
    keys: pl.DataFrame
    bounds: pl.DataFrame
    samples: pl.DataFrame
    frames: pl.DataFrame

    @classmethod
    def nothing(cls) -> StoredBefore:
        """For an empty batch."""
        empty = pl.DataFrame()
        return cls(empty, empty, empty, empty, empty, empty)


@dataclass(frozen=True, slots=True)
class DerivedUpdate:
    """What one update recomputed."""

    windows: int
    rejudged: int
    gaps_open: int
    health_changes: int


def _span(windows: pl.DataFrame) -> tuple[datetime, datetime]:
    """The first and last ``window_start`` of a non-empty frame of windows."""
    low, high = windows["window_start"].min(), windows["window_start"].max()
    if not isinstance(low, datetime) or not isinstance(high, datetime):
        raise TypeError("window_start must be a datetime column")
    return low, high


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
    ) -> None:
        self._con = con
        self.thresholds = thresholds or HealthThresholds()
        self.contact = contact or ContactModel()
        self._columns = {t: _table_columns(con, t) for t in ("gpu_windows_1m", "rack_windows_1m", "tenant_minutes")}
        self._last_refresh: tuple[datetime, float] | None = None
        # Small per-rack state, cached (this process is the file's only writer) and written through;
        # a transaction's changes are kept aside until it commits (``committed``/``rolled_back``).
        self._state = {name: self._query(f"SELECT * FROM {name}") for name in _STATE_TABLES}
        self._state["rack_link"] = self._state["rack_link"].select(list(LINK_SCHEMA)).cast(LINK_SCHEMA)  # type: ignore[arg-type]
        self._pending: dict[str, pl.DataFrame] = {}

    def committed(self) -> None:
        """The writer committed: the state changed in its transaction becomes the state."""
        self._state.update(self._pending)
        self._pending = {}

    def rolled_back(self) -> None:
        """The writer rolled back: forget the state changed in its transaction."""
        self._pending = {}

    def _current(self, name: str) -> pl.DataFrame:
        return self._pending.get(name, self._state[name])

    def _rewrite(self, name: str, rows: pl.DataFrame) -> None:
        """Replace a small state table whole (a few rows per rack and epoch)."""
        self._con.execute(f"DELETE FROM {name}")
        _insert(self._con, name, list(rows.columns), rows)
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

    def _rows_of_windows(self, table: str, windows: pl.DataFrame) -> pl.DataFrame:
        """Every stored row of ``table`` (``gpu_samples``/``rack_frames``) sampled in ``windows``' minutes."""
        low, high = _span(windows)
        columns = ", ".join(f"s.{c}" for c in _table_columns(self._con, table) if c not in _RAW_SKIP)
        return self._query(
            f"""SELECT {columns} FROM {table} s SEMI JOIN wanted w
                ON s.rack_id = w.rack_id AND s.sampled_at >= w.window_start
                AND s.sampled_at < w.window_start + INTERVAL 1 MINUTE
            WHERE s.sampled_at >= ? AND s.sampled_at < ?""",
            [low, high + _MINUTE],
            wanted=windows,
        )

    def _windows_before(self, table: str, columns: str, windows: pl.DataFrame, minutes: int) -> pl.DataFrame:
        """Stored rows of ``table`` in the ``minutes`` before each window, excluding the windows themselves."""
        low, high = _span(windows)
        return self._query(
            f"""SELECT {columns} FROM {table} s
            WHERE s.window_start >= ? AND s.window_start < ?
            AND EXISTS (SELECT 1 FROM wanted w WHERE w.rack_id = s.rack_id
                AND s.window_start >= w.window_start - to_minutes(?::BIGINT) AND s.window_start < w.window_start)
            AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.rack_id = s.rack_id AND w.window_start = s.window_start)""",
            [low - timedelta(minutes=minutes), high, minutes],
            wanted=windows,
        )

    def _next_stored_windows(self, late: pl.DataFrame) -> pl.DataFrame:
        """Per late frame's window, the rack's next stored window within the counter horizon."""
        low, high = _span(late)
        return self._query(
            """SELECT l.rack_id, min(s.window_start) AS window_start FROM late l JOIN rack_windows_1m s
                ON s.rack_id = l.rack_id AND s.window_start > l.window_start
                AND s.window_start <= l.window_start + to_minutes(?::BIGINT)
            WHERE s.window_start > ? AND s.window_start <= ?
            GROUP BY l.rack_id, l.window_start""",
            [HORIZON_MINUTES, low, high + timedelta(minutes=HORIZON_MINUTES)],
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
        touched = self._touched_windows(offered, late)
        return StoredBefore(
            touched=touched,
            late=late,
            keys=keys,
            bounds=bounds,
            samples=self._rows_of_windows("gpu_samples", touched),
            frames=self._rows_of_windows("rack_frames", touched),
        )

    def after_insert(
        self,
        before: StoredBefore,
        new_frames: pl.DataFrame,
        new_samples: pl.DataFrame,
        as_of: datetime | None,
        now: datetime,
    ) -> DerivedUpdate:
        """Recompute what the newly stored rows change (see the module docstring), in the open transaction."""
        windows = rejudged = gaps_open = 0
        if not new_frames.is_empty():
            samples = pl.concat([before.samples, new_samples.select(before.samples.columns)], how="vertical_relaxed")
            frames = pl.concat([before.frames, new_frames.select(before.frames.columns)], how="vertical_relaxed")
            windows = before.touched.height
            rejudged = self._recompute(before.touched, samples, frames, now, late=not before.late.is_empty())
            gaps_open = self._update_gaps(new_frames, before.keys, before.bounds, now)
            self._update_link(new_frames)
        changes = 0
        if as_of is not None and self._refresh_due(as_of):
            changes = self.refresh_now(as_of, now)
        return DerivedUpdate(windows, rejudged, gaps_open, changes)

    def _refresh_due(self, as_of: datetime) -> bool:
        """Judge "now" every ``REFRESH_STREAM_S`` of the ground's clock, or ``REFRESH_WALL_S`` of wall time."""
        wall = time.monotonic()
        last = self._last_refresh
        if last is not None and as_of - last[0] < REFRESH_STREAM and wall - last[1] < REFRESH_WALL_S:
            return False
        self._last_refresh = (as_of, wall)
        return True

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
        following = self._next_stored_windows(late)
        return pl.concat([own, following.cast(own.schema)]).unique().sort(WINDOW_KEY)

    def _recompute(
        self, touched: pl.DataFrame, samples: pl.DataFrame, frames: pl.DataFrame, now: datetime, *, late: bool
    ) -> int:
        """Recompute ``touched`` windows from all their rows; re-judge later windows whose SEU norm moves."""
        state_columns = "last_epoch, last_seq, window_start, rack_id"
        gpu_state = self._windows_before(
            "gpu_windows_1m",
            f"{state_columns}, node, gpu, " + ", ".join(f"{c}_last" for c in GPU_COUNTERS),
            touched,
            HORIZON_MINUTES,
        )
        # One read of the rack's earlier minutes serves both the counter lookback (10 minutes; older rows
        # are ignored by the horizon rule) and the SEU norm (70 minutes).
        span = max(self.thresholds.seu_baseline_windows + self.thresholds.seu_recent_windows, HORIZON_MINUTES)
        earlier = self._windows_before(
            "rack_windows_1m", f"{state_columns}, seu_count_last, seu_inc, coverage", touched, span
        )
        tables = compute_windows(samples, frames, gpu_state, earlier, self.thresholds)
        racks = judge_racks(tables.rack, earlier, self.thresholds)
        # Only late frames leave stored windows after the recomputed ones (whose SEU norm may move).
        later = self._later_windows(touched, span) if late else racks.clear()
        stamp = pl.lit(now).alias("computed_at")
        self._replace("gpu_windows_1m", touched, tables.gpu.with_columns(stamp))
        self._replace("rack_windows_1m", touched, racks.with_columns(stamp))
        self._replace("tenant_minutes", touched, tables.tenants)
        if later.is_empty():
            return 0
        context = self._windows_before("rack_windows_1m", "rack_id, window_start, seu_inc, coverage", later, span)
        again = judge_racks(later.drop(HEALTH_COLUMNS, "computed_at"), context, self.thresholds)
        self._replace("rack_windows_1m", later.select(WINDOW_KEY), again.with_columns(stamp))
        return later.height

    def _later_windows(self, touched: pl.DataFrame, span: int) -> pl.DataFrame:
        """Stored rack windows in the ``span`` minutes after a recomputed window, not recomputed themselves."""
        low, high = _span(touched)
        columns = ", ".join(f"s.{c}" for c in self._columns["rack_windows_1m"])
        return self._query(
            f"""SELECT {columns} FROM rack_windows_1m s
            WHERE s.window_start > ? AND s.window_start <= ?
            AND EXISTS (SELECT 1 FROM wanted w WHERE w.rack_id = s.rack_id
                AND s.window_start > w.window_start AND s.window_start <= w.window_start + to_minutes(?::BIGINT))
            AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.rack_id = s.rack_id AND w.window_start = s.window_start)""",
            [low, high + timedelta(minutes=span), span],
            wanted=touched,
        )

    def _replace(self, table: str, windows: pl.DataFrame, rows: pl.DataFrame) -> None:
        """Delete ``windows``' rows of ``table`` and insert ``rows`` in their place."""
        low, high = _span(windows)
        self._con.register("gone", windows.select(WINDOW_KEY))
        try:
            self._con.execute(
                f"""DELETE FROM {table} t WHERE t.window_start >= ? AND t.window_start <= ?
                AND EXISTS (SELECT 1 FROM gone g WHERE g.rack_id = t.rack_id AND g.window_start = t.window_start)""",
                [low, high],
            )
        finally:
            self._con.unregister("gone")
        _insert(self._con, table, self._columns[table], rows)

    def _update_gaps(self, new_frames: pl.DataFrame, keys: pl.DataFrame, bounds: pl.DataFrame, now: datetime) -> int:
        """Fold the new frames into the open gaps and sequence bounds of their racks and epochs."""
        key = ["rack_id", "boot_epoch"]
        all_gaps = self._current("open_gaps")
        before = all_gaps.join(keys, on=key, how="semi")
        gaps = update_gaps(before.select(list(GAP_SCHEMA)), new_frames, bounds)
        detected = gaps.join(before.select(*GAP_SCHEMA, "detected_at"), on=list(GAP_SCHEMA), how="left")
        detected = detected.with_columns(pl.col("detected_at").fill_null(pl.lit(now, _UTC)))
        untouched = all_gaps.join(keys, on=key, how="anti")
        self._rewrite(
            "open_gaps", pl.concat([untouched, detected.select(untouched.columns)]).sort([*key, "first_missing"])
        )
        all_bounds = self._current("seq_bounds")
        merged = seq_bounds(new_frames, bounds)
        self._rewrite("seq_bounds", pl.concat([all_bounds.join(keys, on=key, how="anti"), merged]).sort(key))
        return detected.height

    def _update_link(self, new_frames: pl.DataFrame) -> None:
        """Fold the new frames into each rack's link state (passes, last frame)."""
        link = self._current("rack_link")
        racks = new_frames.select("rack_id").unique()
        updated = update_link_state(
            link.join(racks, on="rack_id", how="semi"), new_frames, pass_break_s=self.contact.pass_break_s
        )
        self._rewrite("rack_link", pl.concat([link.join(racks, on="rack_id", how="anti"), updated]).sort("rack_id"))

    def refresh_now(self, as_of: datetime, now: datetime) -> int:
        """Judge every rack as of ``as_of``; log the racks whose state changed. Returns how many changed."""
        link = self._current("rack_link")
        if link.is_empty():
            return 0
        previous = self._query("SELECT * FROM rack_health_now")
        latest = self._latest_windows(previous)
        if latest.is_empty():
            return 0
        c = self.contact
        contact = contact_at(
            link,
            as_of,
            c.orbit_period_s,
            pass_break_s=c.pass_break_s,
            tolerance_s=c.tolerance_s,
        )
        judged = judge_now(latest, contact, self.thresholds).join(
            latest.select("rack_id", pl.col("reasons").alias("last_known_reasons")), on="rack_id"
        )
        changed = judged.join(
            previous.select("rack_id", pl.col("state").alias("before")), on="rack_id", how="left"
        ).filter(pl.col("before").is_null() | (pl.col("before") != pl.col("state")))
        self._con.execute("DELETE FROM rack_health_now")
        columns = [*NOW_COLUMNS, "last_known_reasons"]
        _insert(self._con, "rack_health_now", columns, judged.select(columns))
        log = changed.select(
            "rack_id", "as_of", "state", "reasons", "last_window_start", pl.lit(now, _UTC).alias("logged_at")
        )
        _insert(self._con, "rack_health_log", list(log.columns), log)
        return changed.height

    def _latest_windows(self, previous: pl.DataFrame) -> pl.DataFrame:
        """Each rack's newest window and its event-time state.

        Only windows at or after the oldest "newest window" judged before are read (plus every window of
        racks not judged yet), so the scan follows the quietest rack's silence, not the history.
        """
        since = previous["last_window_start"].min() if not previous.is_empty() else None
        where = "WHERE window_start >= ? OR rack_id NOT IN (SELECT rack_id FROM rack_health_now)" if since else ""
        return self._query(
            f"""SELECT rack_id, max(window_start) AS window_start,
                arg_max(state, window_start) AS state, arg_max(reasons, window_start) AS reasons
            FROM rack_windows_1m {where} GROUP BY rack_id""",
            [since] if since is not None else None,
        )


_STATE_TABLES = ("seq_bounds", "open_gaps", "rack_link")
_RAW_SKIP = {"ingested_at", "schema_id", "kafka_partition", "kafka_offset", "firmware", "ground_station"}


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table]
    ).fetchall()
    return [str(r[0]) for r in rows]


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: list[str], rows: pl.DataFrame) -> None:
    if rows.is_empty():
        return
    names = ", ".join(columns)
    con.register("new_rows", rows.select(columns))
    try:
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM new_rows")
    finally:
        con.unregister("new_rows")


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)
