"""The batch writer: one DuckDB transaction stores a batch's rows, dead letters and Kafka offsets.

Frames already stored are dropped by the ``rack_frames`` primary key (``ON CONFLICT DO NOTHING``),
so a frame is stored once however often, and however late, it arrives. Offsets and exactly-once
counters are written in the same transaction, so after a crash the consumer resumes exactly where the
last committed batch ended.

**Frames of archived days** (sampled before the batch's ``archived_before``: their day's raw rows are in
the Parquet archive, or due to move there) are stored like any other, never dead-lettered: a partition
read late (consumer lag, one rack's playback backlog) must lose nothing. They are deduplicated against the
archive's files of their day as well as against the live rows, counted in the same exactly-once
accounting, and the next retention run moves them to the archive as another part of their day. They do
not update the derived tables: the minutes, gaps and health of a day whose raw rows left DuckDB cannot be
recomputed from all their rows (and retention may be archiving that day meanwhile), so those keep the
values computed before the day was archived. Decision: a frame is never lost for being late, and a
window is never recomputed from part of its rows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

import duckdb
import polars as pl

from processing.rows import FRAME_KEY
from storage.archive import literal
from storage.database import database_path, disk_full_detail, insert_rows, table_columns
from storage.derived import DerivedRows, DerivedTables, DerivedUpdate, StoredBefore
from storage.errors import StorageError
from storage.transaction_step import TransactionStep, WindowScope

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CLOCK_SKEW = timedelta(minutes=5)
ComputeOn = Callable[[Callable[[], DerivedRows]], "Future[DerivedRows]"]
"""Runs a computation elsewhere (the daemon's main thread) and returns its future."""


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """What one batch did on one partition: where it ended and what it consumed."""

    next_offset: int
    messages: int
    duplicates_in_batch: int = 0


@dataclass(slots=True)
class BatchToStore:
    """Everything one batch writes, in the tables' column names."""

    topic: str
    rack_rows: pl.DataFrame
    gpu_rows: pl.DataFrame
    dead_letters: pl.DataFrame
    progress: dict[int, PartitionProgress] = field(default_factory=dict)
    archived_before: datetime | None = None
    """Frames sampled before it belong to days archived or due: stored, but outside the derived tables."""

    def live_rows(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The rack and GPU rows of days not archived (all rows without ``archived_before``)."""
        if self.archived_before is None:
            return self.rack_rows, self.gpu_rows
        keep = pl.col("sampled_at") >= self.archived_before
        return self.rack_rows.filter(keep), self.gpu_rows.filter(keep)


@dataclass(frozen=True, slots=True)
class PartitionOutcomes:
    """What became of one batch's messages on one partition: each is stored, a duplicate or a dead letter."""

    stored: int
    duplicates: int
    dead_letters: int


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What a committed batch stored, in total and per partition."""

    frames_stored: int
    samples_stored: int
    duplicates_dropped: int
    dead_letters: int
    derived: DerivedUpdate | None = None
    by_partition: dict[int, PartitionOutcomes] = field(default_factory=dict, hash=False)


class HistoryWriter:
    """Writes batches to an open DuckDB connection that this process owns."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        derived: DerivedTables | None = None,
        alerts: TransactionStep | None = None,
    ) -> None:
        self._con = con
        self.derived = derived
        self.alerts = alerts if derived is not None else None
        self._stream_time: datetime | None = None
        if derived is not None:  # resume the ground's clock where the last run left it
            row = con.execute("SELECT max(as_of) FROM rack_health_now").fetchone()
            self._stream_time = row[0] if row else None
        self._path = database_path(con)
        self._rack_columns = table_columns(con, "rack_frames")
        self._gpu_columns = table_columns(con, "gpu_samples")
        self._dead_columns = table_columns(con, "dead_letters")
        if derived is not None:
            # A crash may have left held open minutes unwritten: recompute them from their raw rows.
            recovered = self._transaction(
                "open-minute recovery", lambda: derived.recover_open_minutes(datetime.now(UTC))
            )
            if recovered:
                log.info("recomputed %d open minute(s) that the last run did not write", recovered)

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """Next offset to read per partition, as committed with the data."""
        # A cursor of its own: the rebalance listener calls this from kafka-python's IO thread.
        with self._con.cursor() as cursor:
            rows = cursor.execute(
                "SELECT kafka_partition, next_offset FROM kafka_offsets WHERE topic = ?", [topic]
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def handovers(self, topic: str) -> dict[int, int]:
        """Partitions a rebalance moved to another group member, with the next offset handed over."""
        with self._con.cursor() as cursor:  # called from kafka-python's IO thread, like stored_offsets
            rows = cursor.execute(
                "SELECT kafka_partition, next_offset FROM partition_handovers WHERE topic = ?", [topic]
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def record_handovers(self, topic: str, offsets: dict[int, int]) -> None:
        """Remember partitions handed over in a rebalance at ``offsets`` (no batch is in flight then)."""
        with self._con.cursor() as cursor:
            cursor.executemany(
                "INSERT OR REPLACE INTO partition_handovers VALUES (?, ?, ?, now())",
                [[topic, p, o] for p, o in sorted(offsets.items())],
            )

    def forget_handovers(self, topic: str, partitions: list[int]) -> None:
        """The partitions are this history's again: their handovers no longer apply."""
        with self._con.cursor() as cursor:
            cursor.execute(
                "DELETE FROM partition_handovers WHERE topic = ? AND list_contains(?, kafka_partition)",
                [topic, partitions],
            )

    def claims(self, topic: str) -> dict[int, int | None]:
        """Partitions this history was assigned, with the offset it began reading each at (None: the
        consumer's ``auto_offset_reset``)."""
        with self._con.cursor() as cursor:  # called from kafka-python's IO thread, like stored_offsets
            rows = cursor.execute(
                "SELECT kafka_partition, first_offset FROM partition_claims WHERE topic = ?", [topic]
            ).fetchall()
        return {int(p): None if o is None else int(o) for p, o in rows}

    def record_claims(self, topic: str, first_offsets: dict[int, int | None]) -> None:
        """Remember partitions newly assigned to this history and where it begins reading them (an existing
        claim is kept)."""
        with self._con.cursor() as cursor:
            cursor.executemany(
                "INSERT OR IGNORE INTO partition_claims VALUES (?, ?, ?, now())",
                [[topic, p, o] for p, o in sorted(first_offsets.items())],
            )

    def forget_claims(self, topic: str, partitions: list[int]) -> None:
        """Partitions handed over before this history stored any of their messages: no longer its own."""
        with self._con.cursor() as cursor:
            cursor.execute(
                "DELETE FROM partition_claims WHERE topic = ? AND list_contains(?, kafka_partition)",
                [topic, partitions],
            )

    def write(self, batch: BatchToStore, compute_on: ComputeOn | None = None) -> StoredBatch:
        """Store one batch atomically; raises StorageError after rolling back on failure.

        With derived tables, their recompute (pure polars) runs through ``compute_on`` when given (the
        daemon hands it to its main thread, so it overlaps the raw insert), else here.
        """
        now = datetime.now(UTC)
        con = self._con
        clock = self._stream_time  # restored if the batch is rolled back
        _begin(con)
        try:
            pending: Future[DerivedRows] | None = None
            before = None
            live_rack, live_gpu = batch.live_rows()
            if self.derived is not None:
                before = self.derived.before_insert(live_rack)
                assumed = before.new_rows(live_rack, live_gpu)
                if compute_on is not None and not assumed[0].is_empty():
                    pending = compute_on(partial(self.derived.compute, before, *assumed))
            offered = self._not_archived(batch.rack_rows, batch.archived_before, live_rack.height)
            new_keys = self._insert_frames(offered, now)
            samples = self._insert_samples(batch.gpu_rows, batch.rack_rows.height, new_keys)
            dead = self._insert_dead_letters(batch.dead_letters, now)
            outcomes = _outcomes(batch, new_keys, dead)
            self._advance_offsets(batch, outcomes, now)
            derived = (
                self._derive(before, pending, batch, live_rack, live_gpu, new_keys, now) if before is not None else None
            )
            con.execute("COMMIT")
        except Exception as exc:
            self._rolled_back()
            self._stream_time = clock
            if isinstance(exc, duckdb.Error | pl.exceptions.PolarsError):
                detail = disk_full_detail(self._path, exc)
                raise StorageError(f"batch write to {self._path} failed and was rolled back: {exc}{detail}") from exc
            raise
        self._committed()
        duplicates = sum(done.duplicates for done in outcomes.values())
        return StoredBatch(new_keys.height, samples, duplicates, dead.height, derived, outcomes)

    def newest_by_satellite(self) -> dict[str, datetime]:
        """The newest stored frame's ``sampled_at`` per satellite (frames still in ``rack_frames``)."""
        rows = self._con.execute("SELECT satellite_id, max(sampled_at) FROM rack_frames GROUP BY ALL").fetchall()
        return {str(satellite): sampled_at for satellite, sampled_at in rows}

    def _committed(self) -> None:
        if self.derived is not None:
            self.derived.committed()
        if self.alerts is not None:
            self.alerts.committed()

    def _rolled_back(self) -> None:
        """After a failure: roll back (a failed COMMIT has already) and forget the derived state changes."""
        with contextlib.suppress(duckdb.Error):  # no transaction active: DuckDB rolled back itself
            self._con.execute("ROLLBACK")
        if self.derived is not None:
            self.derived.rolled_back()
        if self.alerts is not None:
            self.alerts.rolled_back()

    def _derive(
        self,
        before: StoredBefore,
        pending: Future[DerivedRows] | None,
        batch: BatchToStore,
        rack_rows: pl.DataFrame,
        gpu_rows: pl.DataFrame,
        new_keys: pl.DataFrame,
        now: datetime,
    ) -> DerivedUpdate:
        """Update the derived tables for the newly stored frames of live days (``rack_rows``, ``gpu_rows``),
        in the open transaction."""
        assert self.derived is not None
        if new_keys.height != rack_rows.height:
            rack_rows = rack_rows.join(new_keys, on=FRAME_KEY, how="semi")
            gpu_rows = gpu_rows.join(new_keys, on=FRAME_KEY, how="semi")
        rows = pending.result() if pending is not None else None
        if rows is None or rows.new_frames != rack_rows.height:
            # Computed here, or the insert disagreed with the assumed new rows (a stored copy of a frame
            # outside its window: a corrupt sampled_at): recompute from the rows actually inserted.
            rows = self.derived.compute(before, rack_rows, gpu_rows) if not rack_rows.is_empty() else None
        if not batch.rack_rows.is_empty():
            # The ground's clock: the newest receive time, never ahead of the wall clock by more than the
            # tolerated skew (one producer's bad timestamp must not make every rack look silent).
            newest = batch.rack_rows["received_at"].max()
            if isinstance(newest, datetime):
                newest = min(newest, now + CLOCK_SKEW)
                if self._stream_time is None or newest > self._stream_time:
                    self._stream_time = newest
        update = self.derived.after_insert(before, rows, rack_rows, self._stream_time, now)
        self._alert(rows, now, before.touched)
        return update

    def _alert(self, rows: DerivedRows | None, now: datetime, touched: pl.DataFrame | None = None) -> None:
        """Evaluate the alert rules on what this transaction recomputed and judged (when alerting is on).

        Rate rules also get the stored windows of their lookback before the recomputed ones as context.
        """
        if self.alerts is None or self.derived is None or self._stream_time is None:
            return
        racks = [r for r in (rows.rack, rows.later) if not r.is_empty()] if rows is not None else []
        frames: dict[WindowScope, pl.DataFrame] = {
            "gpu": rows.gpu if rows is not None else pl.DataFrame(),
            "rack": pl.concat(racks, how="diagonal_relaxed") if racks else pl.DataFrame(),
            "rack_now": self.derived.last_now,
        }
        self.derived.last_now = pl.DataFrame()
        context: dict[WindowScope, pl.DataFrame] = {}
        tables: tuple[tuple[WindowScope, str], ...] = (("gpu", "gpu_windows_1m"), ("rack", "rack_windows_1m"))
        for scope, table in tables:
            lookback = self.alerts.rate_lookback(scope)
            if lookback is not None and touched is not None and not touched.is_empty() and not frames[scope].is_empty():
                minutes = int(lookback.total_seconds() // 60) + 1
                context[scope] = self.derived.stored_windows_before(table, touched, minutes)
        self.alerts.step(frames, self._stream_time, now, context)

    def refresh_now(self, advanced_by: float) -> int:
        """Re-judge ``fleet_health_now`` at the ground's clock advanced by ``advanced_by`` idle seconds.

        The ground's clock is the newest Kafka timestamp stored, so a backlog is judged as of its own time
        and a live stream as of (almost) now. Returns the racks whose state changed; call only while no
        batch write is in flight.
        """
        if self.derived is None or self._stream_time is None:
            return 0
        derived, as_of, now = self.derived, self._stream_time + timedelta(seconds=advanced_by), datetime.now(UTC)

        def refresh() -> int:
            derived.write_held(now)  # idle: the open minutes need not wait for their hold to end
            changed = derived.refresh_now(as_of, now)
            self._alert(None, now)
            return changed

        return self._transaction("health refresh", refresh)

    def flush_held(self) -> int:
        """Write the open minutes held in memory (``storage.open_windows``); returns how many. Call when
        stopping, or whenever queries must see every stored frame in the window tables."""
        derived = self.derived
        if derived is None or not derived.held.count:
            return 0
        return self._transaction("window flush", lambda: derived.write_held(datetime.now(UTC)))

    def _transaction(self, what: str, work: Callable[[], _T]) -> _T:
        """``work`` in a transaction of its own, committed (and the derived state with it) or rolled back."""
        _begin(self._con)
        try:
            result = work()
            self._con.execute("COMMIT")
        except Exception as exc:
            self._rolled_back()
            if isinstance(exc, duckdb.Error | pl.exceptions.PolarsError):
                detail = disk_full_detail(self._path, exc)
                raise StorageError(f"{what} of {self._path} failed and was rolled back: {exc}{detail}") from exc
            raise
        self._committed()
        return result

    def _not_archived(self, rack_rows: pl.DataFrame, archived_before: datetime | None, live: int) -> pl.DataFrame:
        """``rack_rows`` without the frames of archived days that the archive already holds."""
        if archived_before is None or live == rack_rows.height:
            return rack_rows
        old = rack_rows.filter(pl.col("sampled_at") < archived_before)
        days = sorted({d for d in old["sampled_at"].dt.date().to_list() if d is not None})
        files = [
            str(path)
            for (path,) in self._con.execute(
                "SELECT path FROM archive_log WHERE table_name = 'rack_frames' AND list_contains(?, day)", [days]
            ).fetchall()
        ]
        if not files:
            return rack_rows
        listed = ", ".join(literal(f) for f in files)
        archived = pl.DataFrame(
            self._con.execute(
                f"SELECT rack_id, boot_epoch, frame_seq FROM read_parquet([{listed}]) WHERE list_contains(?, rack_id)",
                [old["rack_id"].unique().to_list()],
            ).fetchall(),
            schema={"rack_id": pl.String, "boot_epoch": pl.Int32, "frame_seq": pl.Int64},
            orient="row",
        )
        return rack_rows.join(archived, on=FRAME_KEY, how="anti")

    def _insert_frames(self, rack_rows: pl.DataFrame, now: datetime) -> pl.DataFrame:
        rows = rack_rows.with_columns(pl.lit(now).alias("ingested_at"))
        inserted = insert_rows(
            self._con,
            "rack_frames",
            self._rack_columns,
            rows,
            returning="rack_id, boot_epoch, frame_seq, kafka_partition",
        )
        return pl.DataFrame(
            inserted,
            schema={
                "rack_id": pl.String,
                "boot_epoch": pl.Int32,
                "frame_seq": pl.Int64,
                "kafka_partition": pl.Int32,
            },
            orient="row",
        )

    def _insert_samples(self, gpu_rows: pl.DataFrame, offered: int, new_keys: pl.DataFrame) -> int:
        rows = gpu_rows if new_keys.height == offered else gpu_rows.join(new_keys, on=FRAME_KEY, how="semi")
        insert_rows(self._con, "gpu_samples", self._gpu_columns, rows)
        return rows.height

    def _insert_dead_letters(self, dead: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if dead.is_empty():
            return pl.DataFrame(schema={"kafka_partition": pl.Int32})
        rows = dead.with_columns(pl.lit(now).alias("dead_lettered_at"))
        inserted = insert_rows(self._con, "dead_letters", self._dead_columns, rows, returning="kafka_partition")
        return pl.DataFrame(inserted, schema={"kafka_partition": pl.Int32}, orient="row")

    def _advance_offsets(self, batch: BatchToStore, outcomes: dict[int, PartitionOutcomes], now: datetime) -> None:
        for partition, progress in batch.progress.items():
            done = outcomes[partition]
            self._con.execute(
                """INSERT INTO kafka_offsets VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (topic, kafka_partition) DO UPDATE SET
                    next_offset = excluded.next_offset,
                    messages = kafka_offsets.messages + excluded.messages,
                    frames_stored = kafka_offsets.frames_stored + excluded.frames_stored,
                    duplicates_dropped = kafka_offsets.duplicates_dropped + excluded.duplicates_dropped,
                    dead_letters = kafka_offsets.dead_letters + excluded.dead_letters,
                    updated_at = excluded.updated_at""",
                [
                    batch.topic,
                    partition,
                    progress.next_offset,
                    progress.messages,
                    done.stored,
                    done.duplicates,
                    done.dead_letters,
                    now,
                ],
            )


def _begin(con: duckdb.DuckDBPyConnection) -> None:
    """Start a transaction, or fail with StorageError (e.g. another transaction is open on ``con``)."""
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.Error as exc:
        raise StorageError(f"cannot start a transaction: {exc}") from exc


def _outcomes(batch: BatchToStore, new_keys: pl.DataFrame, dead: pl.DataFrame) -> dict[int, PartitionOutcomes]:
    """Per partition of ``batch``: frames stored, duplicates dropped (in the batch or already stored), dead letters."""
    stored, offered, dead_letters = (_count_by_partition(f) for f in (new_keys, batch.rack_rows, dead))
    return {
        partition: PartitionOutcomes(
            stored.get(partition, 0),
            progress.duplicates_in_batch + offered.get(partition, 0) - stored.get(partition, 0),
            dead_letters.get(partition, 0),
        )
        for partition, progress in batch.progress.items()
    }


def _count_by_partition(frame: pl.DataFrame) -> dict[int, int]:
    if frame.is_empty():
        return {}
    return dict(frame.group_by("kafka_partition").len().iter_rows())
