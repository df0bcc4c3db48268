"""Rollups of minute tables by hour (and by recent 10-minute slice): what saved queries read instead of a
day of minute windows.

A rollup's table holds **additive** rows: for a key k (a GPU; a tenant on a rack) and bucket B (an hour, or
a 10-minute slice) the truth is the sum of its rows for (k, B), and ``rollup_marks`` names the buckets that
truth covers, ``[covered_from, complete_before)`` (NULL before the first roll). For every bucket in that
span the rows of (k, B) add up to the source table's windows of k in B, each table counted with its
archived days. Two moves keep it so, inside the batch's transaction (``storage.derived`` calls them):

- **roll**: once a batch writes a window ``SETTLE`` past the end of bucket ``complete_before``, the buckets
  from there to that point are aggregated from the source, one row per key and bucket, and
  ``complete_before`` moves on. The first roll of a history starts at its oldest window not archived, so
  a history written before the table existed is covered at once (one long transaction, logged).
- **account**: whenever windows of a covered bucket are replaced (late frames, a held minute written once
  it closed, a restart's open minutes), the replaced windows are subtracted and the new ones added, as rows
  of their own.

A rollup with a ``keep`` (the slices) covers only its newest buckets: each roll drops the rows of buckets
more than ``keep`` before ``complete_before`` and moves ``covered_from`` up to there, and its first roll
starts ``keep`` back. Queries read its buckets only where the hourly table does not cover the span yet.

Why additive rows: nothing is read back and rewritten, and retention stays simple: it moves each table's
days in transactions of their own, which keeps every table's sum over live and archived rows, so the
invariant holds whichever table moved a day first.

Decisions: ``SETTLE`` is 5 minutes: a live rack's minute is written when it closes (within
``processing.open_minute_hold_s``, 5 s, or about a minute when its frames lag), so the live fleet is rolled,
not accounted; late playback is accounted. A shorter wait keeps fewer minutes for queries to read: with
15 minutes, during the first quarter of every hour the hour before was read from its 60 minute windows.
Rows are not compacted: a late batch adds one row per key and bucket it touches, few next to the windows a
bucket holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from storage.database import insert_rows
from storage.table import Table
from storage.tables import ROLLUP_MARKS

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SETTLE = timedelta(minutes=5)
HOUR = timedelta(hours=1)
SLICE = timedelta(minutes=10)
_CHUNK = timedelta(hours=24)


def bucket_of_window(width: timedelta) -> str:
    """SQL: the UTC bucket of ``width`` (whole seconds) of a source row's ``window_start``."""
    seconds = round(width.total_seconds())
    return f"to_timestamp(floor(epoch(window_start) / {seconds}) * {seconds})"


HOUR_OF_WINDOW = bucket_of_window(HOUR)
"""SQL: the UTC hour of a source row's ``window_start``."""
SLICE_OF_WINDOW = bucket_of_window(SLICE)
"""SQL: the UTC 10-minute slice of a source row's ``window_start``."""


@dataclass(frozen=True, slots=True)
class Rollup:
    """What one rollup table sums: its ``source`` minute table, the ``key`` of its rows (the bucket aside),
    the source columns ``accounted`` needs, the SQL select list that ``roll`` groups by all, the signed
    ``terms`` of source windows and the aggregates that add terms up per key and bucket; its buckets are
    ``width`` long, start at column ``bucket``, and are kept for ``keep`` (None: all, archived by retention)."""

    table: Table
    source: str
    key: tuple[str, ...]
    accounted: tuple[str, ...]
    roll_select: str
    terms: Callable[[pl.DataFrame, int], pl.DataFrame]
    sums: tuple[pl.Expr, ...]
    width: timedelta = HOUR
    bucket: str = "hour"
    keep: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Marks:
    """The hours a rollup covers: ``[covered_from, complete_before)``."""

    covered_from: datetime
    complete_before: datetime


def floor_to(at: datetime, width: timedelta) -> datetime:
    """The start of ``at``'s UTC bucket of ``width`` (a divisor of a day; ``at`` tz-aware, in any zone DuckDB
    hands it out in)."""
    step = round(width.total_seconds() * 1_000_000)
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=micros - micros % step)


def bucket_of(column: str, width: timedelta, name: str) -> pl.Expr:
    """Polars: the UTC bucket of ``width`` of a datetime column, named ``name``."""
    every = f"{round(width.total_seconds())}s"
    return pl.col(column).dt.convert_time_zone("UTC").dt.truncate(every).alias(name)


def hour_of(column: str) -> pl.Expr:
    """Polars: the UTC hour of a datetime column, named ``hour``."""
    return bucket_of(column, HOUR, "hour")


class BucketRollup:
    """Rolls and accounts one rollup on the writer's connection, inside its open transaction; the marks are
    cached (this process is the file's only writer) and kept aside until the transaction commits."""

    def __init__(self, con: duckdb.DuckDBPyConnection, rollup: Rollup) -> None:
        self._con = con
        self.rollup = rollup
        self.name = rollup.table.name
        row = con.execute(
            "SELECT covered_from, complete_before FROM rollup_marks WHERE name = ? AND covered_from IS NOT NULL",
            [self.name],
        ).fetchall()
        self._marks = Marks(row[0][0].astimezone(UTC), row[0][1].astimezone(UTC)) if row else None
        self._pending: Marks | None = None

    @property
    def marks(self) -> Marks | None:
        """The covered hours as of the open transaction (None: nothing rolled yet)."""
        return self._pending or self._marks

    def committed(self) -> None:
        """The writer committed: the marks moved in its transaction are the marks."""
        if self._pending is not None:
            self._marks, self._pending = self._pending, None

    def rolled_back(self) -> None:
        """The writer rolled back: forget the marks moved in its transaction."""
        self._pending = None

    def covers(self, low: datetime) -> bool:
        """Whether windows from ``low`` on may lie in a covered hour (their replacement must be accounted)."""
        marks = self.marks
        return marks is not None and low < marks.complete_before

    def account(self, replaced: pl.DataFrame, written: pl.DataFrame) -> int:
        """Add the rows that keep covered hours true after ``replaced`` source windows gave way to ``written``
        ones (source rows with at least the ``accounted`` columns); returns the rows added."""
        marks = self.marks
        if marks is None:
            return 0
        parts = []
        for windows, sign in ((written, 1), (replaced, -1)):
            if windows.is_empty():
                continue
            start = pl.col("window_start").dt.convert_time_zone("UTC")
            covered = (
                windows.select(self.rollup.accounted)
                .with_columns(start)
                .filter((start >= marks.covered_from) & (start < marks.complete_before))
            )
            if not covered.is_empty():
                parts.append(self.rollup.terms(covered, sign))
        if not parts:
            return 0
        columns = list(self.rollup.table.names)
        rows = pl.concat(parts).group_by([*self.rollup.key, self.rollup.bucket]).agg(self.rollup.sums).select(columns)
        insert_rows(self._con, self.name, columns, rows)
        return rows.height

    def roll(self, newest: datetime) -> int:
        """Aggregate the buckets that ended ``SETTLE`` before ``newest`` (a window just written) and are not
        covered yet, and drop those a ``keep`` leaves behind; returns the buckets rolled."""
        width, keep = self.rollup.width, self.rollup.keep
        until = floor_to(newest - SETTLE, width)
        marks = self.marks
        if marks is not None and until <= marks.complete_before:
            return 0
        began = time.perf_counter()
        start = marks.complete_before if marks is not None else self._first_bucket()
        if start is not None and keep is not None:
            start = max(start, until - keep)  # a long pause leaves a gap before the buckets kept
        if start is None or start >= until:
            return 0
        step = max(1, round(_CHUNK / width))  # a day at a time: bounded memory
        buckets = round((until - start) / width)
        for low in range(0, buckets, step):
            self._con.execute(
                f"""INSERT INTO {self.name} SELECT {self.rollup.roll_select}
                FROM {self.rollup.source} WHERE window_start >= ? AND window_start < ? GROUP BY ALL""",
                [start + low * width, min(until, start + (low + step) * width)],
            ).fetchall()  # DuckDB 2: a statement's result is finished before the next one
        covered_from = marks.covered_from if marks is not None and marks.complete_before == start else start
        if keep is not None:
            covered_from = max(covered_from, until - keep)
            if marks is not None and covered_from > marks.covered_from:
                self._con.execute(f"DELETE FROM {self.name} WHERE {self.rollup.bucket} < ?", [covered_from]).fetchall()
        self._con.execute(
            f"UPDATE {ROLLUP_MARKS.name} SET covered_from = ?, complete_before = ? WHERE name = ?",
            [covered_from, until, self.name],
        ).fetchall()
        self._pending = Marks(covered_from, until)
        if marks is None:
            log.info(
                "%s: the history's first roll covered %d buckets of %s from %s (%.1f s)",
                self.name,
                buckets,
                width,
                start.isoformat(),
                time.perf_counter() - began,
            )
        return buckets

    def _first_bucket(self) -> datetime | None:
        """The first bucket a history's first roll may cover: its oldest window's, after the archived days."""
        (row,) = self._con.execute(
            f"""SELECT (SELECT min(window_start) FROM {self.rollup.source}),
                (SELECT max(max_time) FROM archive_log WHERE table_name = ?)""",
            [self.rollup.source],
        ).fetchall()
        if row[0] is None:
            return None
        width = self.rollup.width
        oldest: datetime = floor_to(row[0], width)
        return max(oldest, floor_to(row[1], width) + width) if row[1] is not None else oldest
