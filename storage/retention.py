"""Retention: whole UTC days older than the kept span move from DuckDB to a Parquet archive.

Layout: ``<root>/<table>/day=YYYY-MM-DD/part-<tag>-<uuid>.parquet`` (hive-partitioned by day; ``<tag>``
is the database file's stem, so shards may share one root). ``archive_log`` lists every file; readers use
it (``storage.archive``), other tools may glob the layout.

Decisions:

- **The cutoff counts back from the newest stored data** (``max(rack_frames.sampled_at)``), not from the
  wall clock, so a backlog, a copy or a simulated history behaves the same as a live stream. Raw tables
  (``rack_frames``, ``gpu_samples``) keep the newest day and ``raw_days`` whole days before it; rollups
  (``gpu_windows_1m``, ``rack_windows_1m``, ``tenant_minutes``, ``rack_health_log`` by ``as_of``,
  ``gpu_ecc_hours`` and ``tenant_hours`` by ``hour``) keep ``rollup_days``. State tables (gaps, link,
  health now, offsets, alerts, dead letters) are never archived.
- **One transaction per (table, day)**: ``COPY`` the day's rows to ``part-….parquet.tmp``, fsync, rename
  to ``.parquet``, ``DELETE`` the same rows, log the file in ``archive_log``, ``COMMIT``. ``COPY`` and
  ``DELETE`` read one snapshot, so rows the writer commits meanwhile for that day stay live and a later run
  archives them as another part: nothing is lost or doubled. On any failure the transaction is rolled
  back and the file removed; a conflict with the writer (both deleting a row) is retried at the next run.
- **Crash safety**: a crash between rename and commit leaves a file ``archive_log`` does not list. Every
  run first deletes such orphans and ``.tmp`` files of this database, so a glob reader sees no row twice.
- **Rows keep their stored (arrival, hence time-clustered) order**; they are not sorted. Sorting a day
  for ``COPY`` needs memory beyond the daemon's ``memory_limit`` at fleet scale (measured: a sorted 20M-row
  day ran out of memory at 120 MB where the unsorted ``COPY`` streamed it in 2.6 s); Parquet row-group
  min/max on the time column still skip what a time range does not need.
- Day boundaries are computed in Python and bound as tz-aware UTC datetimes: no time zone functions in
  SQL (DuckDB may run without ICU).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb

from storage.archive import literal
from storage.database import disk_full_detail
from storage.errors import ArchiveError

log = logging.getLogger(__name__)
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class ArchivedTable:
    """A table that retention moves: its time column, and whether it keeps ``raw_days`` or ``rollup_days``."""

    name: str
    time_column: str
    raw: bool


ARCHIVED_TABLES: tuple[ArchivedTable, ...] = (
    ArchivedTable("rack_frames", "sampled_at", raw=True),
    ArchivedTable("gpu_samples", "sampled_at", raw=True),
    ArchivedTable("gpu_windows_1m", "window_start", raw=False),
    ArchivedTable("rack_windows_1m", "window_start", raw=False),
    ArchivedTable("tenant_minutes", "window_start", raw=False),
    ArchivedTable("rack_health_log", "as_of", raw=False),
    ArchivedTable("gpu_ecc_hours", "hour", raw=False),
    ArchivedTable("tenant_hours", "hour", raw=False),
)
RAW_TABLES = tuple(t.name for t in ARCHIVED_TABLES if t.raw)


@dataclass(frozen=True, slots=True)
class DayToArchive:
    """One table's UTC day older than its cutoff."""

    table: ArchivedTable
    day: date


@dataclass(frozen=True, slots=True)
class ArchivedPart:
    """One file written, and the rows it took from its table."""

    table: str
    day: date
    path: Path
    rows: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Deferred:
    """A day left live this run (a transaction conflict with the writer); the next run retries it."""

    table: str
    day: date
    reason: str


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one run did: the newest data it counted back from, the cutoffs, files written, days deferred."""

    newest: datetime | None
    raw_cutoff: datetime | None
    rollup_cutoff: datetime | None
    parts: tuple[ArchivedPart, ...] = ()
    deferred: tuple[Deferred, ...] = ()
    orphans_removed: tuple[Path, ...] = ()

    @property
    def rows(self) -> int:
        """Rows moved to the archive."""
        return sum(p.rows for p in self.parts)

    @property
    def bytes(self) -> int:
        """Bytes of Parquet written."""
        return sum(p.bytes for p in self.parts)


Progress = Callable[[int, int, DayToArchive], None]
"""Called before each day with (index, days planned, the day)."""


def archive_root(db_path: Path, configured: Path | None) -> Path:
    """The archive root, absolute: ``configured``, else ``<db path>.archive`` beside the database file."""
    root = configured if configured is not None else db_path.with_name(db_path.name + ".archive")
    return root.resolve()


def database_tag(con: duckdb.DuckDBPyConnection) -> str:
    """The tag in this database's file names: its file's stem (``memory`` for an in-memory database)."""
    rows = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    path = rows[0][0] if rows else None
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem) if path else "memory"


def day_start(day: date) -> datetime:
    """Midnight UTC starting ``day``."""
    return datetime.combine(day, time(), UTC)


def raw_cutoff(newest: datetime, days: int) -> datetime:
    """Midnight UTC ``days`` whole days before the day of ``newest``: rows sampled before it are archived."""
    return day_start(newest.astimezone(UTC).date()) - timedelta(days=days)


def raw_archived_before(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """Midnight UTC after the newest archived raw day (a frame sampled before it belongs to a day that may
    already be archived, so the daemon must not store it); None while no raw day was archived."""
    placeholders = ", ".join("?" for _ in RAW_TABLES)
    row = con.execute(
        f"SELECT max(day) FROM archive_log WHERE table_name IN ({placeholders})", list(RAW_TABLES)
    ).fetchall()[0]
    return day_start(row[0] + timedelta(days=1)) if row[0] is not None else None


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RetentionJob:
    """Moves whole UTC days older than the kept span to the archive under ``root``.

    ``con`` is a cursor of its own (the daemon runs the job on a background thread while its writer uses
    another cursor of the same database), never one with ``attach_archive``'s views; it may be sandboxed
    to ``root`` (``open_database(sandbox=...)``).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, root: Path, raw_days: int, rollup_days: int) -> None:
        if raw_days < 1 or rollup_days < raw_days:
            raise ArchiveError(f"need 1 <= raw_days ({raw_days}) <= rollup_days ({rollup_days})")
        self._con = con
        self.root = root.resolve()
        self.raw_days = raw_days
        self.rollup_days = rollup_days
        self.tag = database_tag(con)
        self.raw_fence: datetime | None = None
        self._ours = re.compile(rf"part-{re.escape(self.tag)}-[0-9a-f]{{32}}\.parquet(\.tmp)?")

    def newest(self) -> datetime | None:
        """The newest stored sample time: what the cutoffs count back from."""
        value = self._con.execute("SELECT max(sampled_at) FROM rack_frames").fetchall()[0][0]
        return value if isinstance(value, datetime) else None

    def cutoffs(self) -> tuple[datetime, datetime] | None:
        """``(raw, rollup)``: days before these are archived; None for an empty history.

        Neither cutoff passes ``raw_fence`` when it is set: the daemon sets it to the boundary of the batch in
        flight (``orbitwatch.archive_boundary``), below which that batch recomputes no minutes, so retention
        never archives a day whose minutes a batch is rewriting.
        """
        newest = self.newest()
        if newest is None:
            return None
        raw, rollup = raw_cutoff(newest, self.raw_days), raw_cutoff(newest, self.rollup_days)
        if self.raw_fence is not None:  # rollups too: a batch in flight rewrites the minutes of its frames
            raw, rollup = min(raw, self.raw_fence), min(rollup, self.raw_fence)
        return raw, rollup

    def plan(self) -> list[DayToArchive]:
        """Every (table, day) with live rows older than its cutoff, oldest day first per table."""
        cutoffs = self.cutoffs()
        if cutoffs is None:
            return []
        planned = []
        for table in ARCHIVED_TABLES:
            cutoff = cutoffs[0] if table.raw else cutoffs[1]
            days = self._con.execute(
                f"SELECT DISTINCT floor(epoch({table.time_column}) / 86400)::BIGINT AS d FROM {table.name} "
                f"WHERE {table.time_column} < ? ORDER BY d",
                [cutoff],
            ).fetchall()
            planned += [DayToArchive(table, _EPOCH + timedelta(days=int(d))) for (d,) in days]
        return planned

    def run_once(self, progress: Progress | None = None) -> RetentionReport:
        """Remove orphans, then archive every planned day. A conflict defers the rest of that table to the
        next run (archived raw days stay contiguous); any other failure raises ArchiveError."""
        orphans = self.remove_orphans()
        cutoffs = self.cutoffs()
        planned = self.plan()
        parts: list[ArchivedPart] = []
        deferred: list[Deferred] = []
        for index, item in enumerate(planned):
            if any(d.table == item.table.name for d in deferred):
                continue
            if progress is not None:
                progress(index, len(planned), item)
            try:
                part = self.archive_day(item.table, item.day)
            except duckdb.TransactionException as exc:
                log.warning("archiving %s %s deferred to the next run: %s", item.table.name, item.day, exc)
                deferred.append(Deferred(item.table.name, item.day, str(exc)))
                continue
            if part is not None:
                parts.append(part)
        return RetentionReport(
            self.newest(),
            cutoffs[0] if cutoffs else None,
            cutoffs[1] if cutoffs else None,
            tuple(parts),
            tuple(deferred),
            tuple(orphans),
        )

    def archive_day(self, table: ArchivedTable, day: date) -> ArchivedPart | None:
        """Move ``table``'s rows of ``day`` to one new file in one transaction; None when it had none.

        Raises duckdb.TransactionException on a conflict with the writer, ArchiveError on other failures;
        either way the transaction is rolled back, the file removed and the rows stay live.
        """
        column = table.time_column
        span = {"low": day_start(day), "high": day_start(day + timedelta(days=1))}
        where = f"{column} >= $low AND {column} < $high"
        directory = self.root / table.name / f"day={day.isoformat()}"
        name = f"part-{self.tag}-{uuid.uuid4().hex}.parquet"
        final, tmp = directory / name, directory / f"{name}.tmp"
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            rows, first, last = con.execute(
                f"SELECT count(*), min({column}), max({column}) FROM {table.name} WHERE {where}", span
            ).fetchall()[0]
            if rows == 0:
                con.execute("ROLLBACK")
                return None
            directory.mkdir(parents=True, exist_ok=True)
            copied = con.execute(
                f"COPY (SELECT * FROM {table.name} WHERE {where}) TO {literal(str(tmp))} "
                "(FORMAT parquet, COMPRESSION zstd)",
                span,
            ).fetchall()[0][0]
            _fsync(tmp)
            os.replace(tmp, final)
            _fsync(directory)
            deleted = con.execute(f"DELETE FROM {table.name} WHERE {where}", span).fetchall()[0][0]
            if not rows == copied == deleted:
                raise ArchiveError(f"{table.name} {day}: counted {rows} rows, copied {copied}, deleted {deleted}")
            size = final.stat().st_size
            con.execute(
                "INSERT INTO archive_log SELECT coalesce(max(id), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ? FROM archive_log",
                [table.name, day, str(final), rows, size, first, last, datetime.now(UTC)],
            )
            con.execute("COMMIT")
        except duckdb.TransactionException:
            self._undo(tmp, final)
            raise
        except (duckdb.Error, OSError, ArchiveError) as exc:
            self._undo(tmp, final)
            raise ArchiveError(
                f"archiving {table.name} {day} to {final} failed, rolled back (its rows stay live): "
                f"{exc}{disk_full_detail(final, exc)}"
            ) from exc
        except BaseException:
            self._undo(tmp, final)
            raise
        log.info("archived %s %s: %d rows, %d bytes -> %s", table.name, day, rows, size, final)
        return ArchivedPart(table.name, day, final, int(rows), size)

    def _undo(self, *files: Path) -> None:
        """Roll back the open transaction (if DuckDB has not already) and remove the files it wrote."""
        with contextlib.suppress(duckdb.Error):
            self._con.execute("ROLLBACK")
        for path in files:
            path.unlink(missing_ok=True)

    def remove_orphans(self) -> list[Path]:
        """Delete this database's ``.tmp`` files and Parquet files ``archive_log`` does not list (left by a
        crash between rename and commit), so a glob over the archive sees each row once."""
        listed = {Path(str(p)).name for (p,) in self._con.execute("SELECT path FROM archive_log").fetchall()}
        removed = []
        for table in ARCHIVED_TABLES:
            for path in sorted((self.root / table.name).glob("day=*/part-*")):
                if self._ours.fullmatch(path.name) and (path.suffix == ".tmp" or path.name not in listed):
                    log.warning("removing %s: not in archive_log (left by an interrupted run)", path)
                    path.unlink()
                    removed.append(path)
        return removed
