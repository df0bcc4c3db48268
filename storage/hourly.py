"""Hourly rollups of minute tables: what saved queries read instead of a day of minute windows.

A rollup's table holds **additive** rows: for a key k (a GPU; a tenant on a rack) and hour H the truth is
the sum of its rows for (k, H), and ``rollup_marks`` names the hours that truth covers,
``[covered_from, complete_before)`` (NULL before the first roll). For every hour in that span the rows of
(k, H) add up to the source table's windows of k in H, each table counted with its archived days. Two
moves keep it so, inside the batch's transaction (``storage.derived`` calls them):

- **roll**: once a batch writes a window ``SETTLE`` past the end of hour ``complete_before``, the hours
  from there to that point are aggregated from the source, one row per key and hour, and
  ``complete_before`` moves on. The first roll of a history starts at its oldest window not archived, so
  a history written before the table existed is covered at once (one long transaction, logged).
- **account**: whenever windows of a covered hour are replaced (late frames, a held minute written once it
  closed, a restart's open minutes), the replaced windows are subtracted and the new ones added, as rows of
  their own.

Why additive rows: nothing is read back and rewritten, and retention stays simple: it moves each table's
days in transactions of their own, which keeps every table's sum over live and archived rows, so the
invariant holds whichever table moved a day first.

Decisions: ``SETTLE`` is 5 minutes: a live rack's minute is written when it closes (within
``processing.open_minute_hold_s``, 5 s, or about a minute when its frames lag), so the live fleet is rolled,
not accounted; late playback is accounted. A shorter wait keeps fewer minutes for queries to read: with
15 minutes, during the first quarter of every hour the hour before was read from its 60 minute windows.
Rows are not compacted: a late batch adds one row per key and hour it touches, few next to the 60 windows an hour holds.
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
SETTLE = timedelta(minutes=5)
_HOUR = timedelta(hours=1)
_CHUNK_HOURS = 24
HOUR_OF_WINDOW = "to_timestamp(floor(epoch(window_start) / 3600) * 3600)"
"""SQL: the UTC hour of a source row's ``window_start``."""


@dataclass(frozen=True, slots=True)
class Rollup:
    """What one hourly table sums: its ``source`` minute table, the ``key`` of its rows (hour aside), the
    source columns ``accounted`` needs, the SQL select list that ``roll`` groups by all, the signed ``terms``
    of source windows and the aggregates that add terms up per key and hour."""

    table: Table
    source: str
    key: tuple[str, ...]
    accounted: tuple[str, ...]
    roll_select: str
    terms: Callable[[pl.DataFrame, int], pl.DataFrame]
    sums: tuple[pl.Expr, ...]


@dataclass(frozen=True, slots=True)
class Marks:
    """The hours a rollup covers: ``[covered_from, complete_before)``."""

    covered_from: datetime
    complete_before: datetime


def floor_hour(at: datetime) -> datetime:
    """The start of ``at``'s UTC hour (``at`` tz-aware, in any zone DuckDB hands it out in)."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_of(column: str) -> pl.Expr:
    """Polars: the UTC hour of a datetime column, named ``hour``."""
    return pl.col(column).dt.convert_time_zone("UTC").dt.truncate("1h").alias("hour")


class HourlyRollup:
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
        rows = pl.concat(parts).group_by([*self.rollup.key, "hour"]).agg(self.rollup.sums).select(columns)
        insert_rows(self._con, self.name, columns, rows)
        return rows.height

    def roll(self, newest: datetime) -> int:
        """Aggregate the hours that ended ``SETTLE`` before ``newest`` (a window just written) and are not
        covered yet; returns the hours rolled."""
        until = floor_hour(newest - SETTLE)
        marks = self.marks
        if marks is not None and until <= marks.complete_before:
            return 0
        began = time.perf_counter()
        start = marks.complete_before if marks is not None else self._first_hour()
        if start is None or start >= until:
            return 0
        for low in range(0, round((until - start) / _HOUR), _CHUNK_HOURS):  # a day at a time: bounded memory
            self._con.execute(
                f"""INSERT INTO {self.name} SELECT {self.rollup.roll_select}
                FROM {self.rollup.source} WHERE window_start >= ? AND window_start < ? GROUP BY ALL""",
                [start + low * _HOUR, min(until, start + (low + _CHUNK_HOURS) * _HOUR)],
            ).fetchall()  # DuckDB 2: a statement's result is finished before the next one
        covered_from = marks.covered_from if marks is not None else start
        self._con.execute(
            f"UPDATE {ROLLUP_MARKS.name} SET covered_from = ?, complete_before = ? WHERE name = ?",
            [covered_from, until, self.name],
        ).fetchall()
        self._pending = Marks(covered_from, until)
        hours = round((until - start) / _HOUR)
        if marks is None:
            log.info(
                "%s: the history's first roll covered %d hours from %s (%.1f s)",
                self.name,
                hours,
                start.isoformat(),
                time.perf_counter() - began,
            )
        return hours

    def _first_hour(self) -> datetime | None:
        """The first hour a history's first roll may cover: its oldest window's, after the archived days."""
        (row,) = self._con.execute(
            f"""SELECT (SELECT min(window_start) FROM {self.rollup.source}),
                (SELECT max(max_time) FROM archive_log WHERE table_name = ?)""",
            [self.rollup.source],
        ).fetchall()
        if row[0] is None:
            return None
        oldest: datetime = floor_hour(row[0])
        return max(oldest, floor_hour(row[1]) + _HOUR) if row[1] is not None else oldest
