"""GPU samples and ECC increments per hour: what the saved query ``rising-ecc`` reads instead of a day of
GPU-minute windows (64,000 GPUs x 1,440 minutes a day for 1,000 racks).

``gpu_ecc_hours`` holds **additive** rows: for GPU g and hour H the truth is the sum of its rows for (g, H),
and ``rollup_marks`` names the hours that truth covers, ``[covered_from, complete_before)`` (NULL before
the first roll). For every hour in that span the rows of (g, H) add up to ``gpu_windows_1m``'s windows of
g in H, each table counted with its archived days. Two moves keep it so, inside the batch's transaction
(``storage.derived`` calls them):

- **roll**: once a batch writes a window ``SETTLE`` past the end of hour ``complete_before``, the hours
  from there to that point are aggregated from ``gpu_windows_1m``, one row per GPU and hour, and
  ``complete_before`` moves on. The first roll of a history starts at its oldest window not archived, so
  a history written before this table existed is covered at once (one long transaction, logged).
- **account**: whenever windows of a covered hour are replaced (late frames, a held minute written once it
  closed, a restart's open minutes), the replaced windows are subtracted and the new ones added, as rows of
  their own.

Why additive rows: nothing is read back and rewritten, and retention stays simple: it moves each table's
days in transactions of their own, which keeps every table's sum over live and archived rows, so the
invariant holds whichever table moved a day first. The sums of the nullable increments keep SQL's meaning
through the ``*_minutes`` counts (a sum is NULL when no minute had a value), so ``rising-ecc`` answers
exactly what it answered from the minute windows (``tests/test_ecc_hours.py`` compares the two).

Decisions: ``SETTLE`` is 15 minutes: a live rack's minute is written when it closes, about a minute later,
so the live fleet is rolled, not accounted; late playback is accounted. Rows are not compacted: a late
batch adds one row per GPU and hour it touches, few next to the 60 windows an hour holds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from storage.database import insert_rows
from storage.tables import GPU_ECC_HOURS, ROLLUP_MARKS

log = logging.getLogger(__name__)
SETTLE = timedelta(minutes=15)
_HOUR = timedelta(hours=1)
_CHUNK_HOURS = 24
NAME = GPU_ECC_HOURS.name
ACCOUNTED = ("rack_id", "node", "gpu", "window_start", "samples", "ecc_sbe_inc", "ecc_dbe_inc")
"""The columns of ``gpu_windows_1m`` that ``account`` needs of replaced and new windows."""
_GPU = ["rack_id", "node", "gpu"]


@dataclass(frozen=True, slots=True)
class Marks:
    """The hours ``gpu_ecc_hours`` covers: ``[covered_from, complete_before)``."""

    covered_from: datetime
    complete_before: datetime


def floor_hour(at: datetime) -> datetime:
    """The start of ``at``'s UTC hour (``at`` tz-aware, in any zone DuckDB hands it out in)."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class EccHours:
    """Rolls and accounts ``gpu_ecc_hours`` on the writer's connection, inside its open transaction; the marks
    are cached (this process is the file's only writer) and kept aside until the transaction commits."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        row = con.execute(
            "SELECT covered_from, complete_before FROM rollup_marks WHERE name = ? AND covered_from IS NOT NULL",
            [NAME],
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
        """Add the rows that keep covered hours true after ``replaced`` windows gave way to ``written`` ones
        (``gpu_windows_1m`` rows with at least the ``ACCOUNTED`` columns); returns the rows added."""
        marks = self.marks
        if marks is None:
            return 0
        parts = []
        for windows, sign in ((written, 1), (replaced, -1)):
            if windows.is_empty():
                continue
            start = pl.col("window_start").dt.convert_time_zone("UTC")
            covered = (
                windows.select(ACCOUNTED)
                .with_columns(start)
                .filter((start >= marks.covered_from) & (start < marks.complete_before))
            )
            if not covered.is_empty():
                parts.append(_signed(covered, sign))
        if not parts:
            return 0
        rows = (
            pl.concat(parts)
            .group_by([*_GPU, "hour"])
            .agg(
                *(pl.col(c).sum() for c in GPU_ECC_HOURS.names[4:-1]),
                pl.col("last_minute").max(),
            )
            .select(GPU_ECC_HOURS.names)
        )
        insert_rows(self._con, NAME, list(GPU_ECC_HOURS.names), rows)
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
                f"""INSERT INTO {NAME} SELECT rack_id, node, gpu,
                    to_timestamp(floor(epoch(window_start) / 3600) * 3600) AS hour, count(*), sum(samples),
                    coalesce(sum(ecc_sbe_inc), 0), count(ecc_sbe_inc), coalesce(sum(ecc_dbe_inc), 0),
                    count(ecc_dbe_inc), max(window_start)
                FROM gpu_windows_1m WHERE window_start >= ? AND window_start < ? GROUP BY ALL""",
                [start + low * _HOUR, min(until, start + (low + _CHUNK_HOURS) * _HOUR)],
            ).fetchall()  # DuckDB 2: a statement's result is finished before the next one
        covered_from = marks.covered_from if marks is not None else start
        self._con.execute(
            f"UPDATE {ROLLUP_MARKS.name} SET covered_from = ?, complete_before = ? WHERE name = ?",
            [covered_from, until, NAME],
        ).fetchall()
        self._pending = Marks(covered_from, until)
        hours = round((until - start) / _HOUR)
        if marks is None:
            log.info(
                "%s: the history's first roll covered %d hours from %s (%.1f s)",
                NAME,
                hours,
                start.isoformat(),
                time.perf_counter() - began,
            )
        return hours

    def _first_hour(self) -> datetime | None:
        """The first hour a history's first roll may cover: its oldest window's, after the archived days."""
        (row,) = self._con.execute(
            """SELECT (SELECT min(window_start) FROM gpu_windows_1m),
                (SELECT max(max_time) FROM archive_log WHERE table_name = 'gpu_windows_1m')"""
        ).fetchall()
        if row[0] is None:
            return None
        oldest: datetime = floor_hour(row[0])
        return max(oldest, floor_hour(row[1]) + _HOUR) if row[1] is not None else oldest


def _signed(windows: pl.DataFrame, sign: int) -> pl.DataFrame:
    """``windows`` as ``gpu_ecc_hours`` terms, counted ``sign`` times (-1: taken away)."""
    return windows.select(
        *_GPU,
        pl.col("window_start").dt.truncate("1h").alias("hour"),
        pl.lit(sign, pl.Int64).alias("minutes"),
        pl.col("samples").cast(pl.Int64) * sign,
        pl.col("ecc_sbe_inc").fill_null(0).cast(pl.Int64).alias("ecc_sbe_inc") * sign,
        pl.col("ecc_sbe_inc").is_not_null().cast(pl.Int64).alias("ecc_sbe_minutes") * sign,
        pl.col("ecc_dbe_inc").fill_null(0).cast(pl.Int64).alias("ecc_dbe_inc") * sign,
        pl.col("ecc_dbe_inc").is_not_null().cast(pl.Int64).alias("ecc_dbe_minutes") * sign,
        (pl.col("window_start") if sign > 0 else pl.lit(None, pl.Datetime("us", "UTC"))).alias("last_minute"),
    )
