"""Late data must cost the same however long the history: one late batch stored over 1 day and 7 days of history.

A satellite loses its downlink for ``--late-minutes`` in the middle of the newest day; the frames sampled
meanwhile are played back from on-board storage (``stored = true``, new Kafka offsets) after the day, twelve
hours late, as one batch. That batch is stored through the real ``HistoryWriter`` into a database holding
1 day of history and into one holding ``--days`` (7) days, each run into a fresh copy of the prepared file,
in three ways:

- **full**: with ``DerivedTables`` (the touched minutes, plus the next stored minute after late frames,
  recomputed from raw rows; later windows re-judged; gaps, link state, health now), after the connection
  wrote the first live batch that follows the day (untimed), as in a running daemon. The derived steps alone
  (``before_insert``, ``compute``, ``after_insert``) are timed inside that same transaction. (The daemon
  overlaps ``compute`` with the raw insert on another thread; here it runs inline, so this is its full cost);
- **raw**: the same, but the late batch written with ``HistoryWriter(con, None)`` (rows, offsets only):
  full - raw is the recompute;
- **cold**: full, but as the first write after opening the file (nothing in DuckDB's buffers yet).

Each copy is fsynced before it is opened: otherwise the first commit's fsync also flushes the freshly
copied file's dirty pages, and the first write after opening looks slower in proportion to the file size
(measured without it: 0.53 s for 1 day against 1.27 s for 7 days; with it: 0.40 s and 0.42 s), an artefact
of the copy, not of the product.

How the history is built (once per invocation; the sizes are printed):

1. **One real day.** The simulator generates ``--racks`` racks on one satellite, continuous contact, no
   loss or duplicates, for a day and one live batch (4,000 messages) more. The messages are decoded,
   prepared and assembled exactly as the daemon does and written through ``HistoryWriter`` with
   ``DerivedTables`` in batches of 4,000 messages, except those received during the outage, held back, and
   those received after the day (the live batch): the derived tables of the day are those the daemon
   would have written. The rack booted ``--days - 1`` days before that day, so ``frame_seq`` is offset by
   that many days of frames.
2. **The late batch.** The held-back messages, re-encoded with ``stored = true``, received at 10 frames/s
   per rack ten minutes after the live batch, with new offsets.
3. **Older days.** A copy of the day with the outage played back (the late batch written through the
   writer, so its windows are those the daemon recomputed) is shifted back by 1..6 days: timestamps and
   ``window_start`` by k days, ``frame_seq``/``last_seq`` by k days of frames (same boot epoch, so the frame keys
   stay unique and the sequence continuous).
4. **The benchmark databases** are built the same way for both sizes: a fresh migrated file, the older
   days (none for 1 day) then the newest day (still missing the outage) inserted table by table in
   ingestion order (``INSERT ... SELECT`` keeps the order, so row groups follow ingestion and the zone maps
   on ``sampled_at``/``window_start`` are as tight as the daemon's), plus the current state tables (gaps,
   sequence bounds, link state, health now, offsets) of the newest day; the whole history's hours rolled
   into the hourly rollups, as a daemon would have rolled them (``storage.hourly``); then ``CHECKPOINT``.

After the first full write in each size, the newest day's derived rows of both databases are compared (all
columns but ``computed_at``): they must be identical, and every write must recompute the same windows.

Sizes with the defaults (2 racks, 20 minutes late): 1 day is 170,400 frames, 10.9 M GPU rows, 233 MiB;
7 days are 1.21 M frames, 77.3 M GPU rows, 1,760 MiB; the late batch is 2,399 frames (153,536 GPU rows)
and recomputes 42 rack windows. The bench takes about 3 minutes on 2 cores (building the histories takes
over half of it), peaks near 2.3 GiB RSS and writes about 30 GB of file copies to a temporary directory
that it deletes. ``--frame-interval-s N`` (> 1) simulates one frame per N seconds: a day of 86,400 / N frames
per rack, built N times faster (the smoke run uses it; its figures are not those of a real day).

    .venv/bin/python -m tests.bench.late_recompute [--racks 2] [--runs 5] [--days 7] [--late-minutes 20]
        [--frame-interval-s 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from ingest.codec import FrameDecoder, RawBatch
from ingest.registry import SchemaRegistry
from ingest.settings import DEFAULT_CONTRACT_DIR
from orbitwatch.assemble import to_store
from processing.rows import prepare_batch
from simulator.codec import ContractCodec
from simulator.config import SimulationConfig
from simulator.messages import SimMessage, generate
from storage.database import open_database
from storage.derived import DerivedRows, DerivedTables, DerivedUpdate, StoredBefore
from storage.writer import BatchToStore, HistoryWriter, StoredBatch
from tests.bench.common import median
from tests.bench.history_30d import roll_up

DAY_S = 86_400
FIRST_DAY = datetime(2026, 11, 1, tzinfo=UTC)
TOPIC = "bench-late"
BATCH_MESSAGES = 4000
PLAYBACK_PER_S = 10
OUTAGE_STARTS_AT = timedelta(hours=12)
_T = TypeVar("_T")

# Columns shifted back by k days when a day is copied as an older day: timestamps by k days, sequence
# numbers by k days of frames (86,400 at one frame per second; same boot epoch).
_SHIFTED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rack_frames": (("sampled_at", "received_at", "ingested_at"), ("frame_seq",)),
    "gpu_samples": (("sampled_at",), ("frame_seq",)),
    "gpu_windows_1m": (("window_start", "computed_at"), ("last_seq",)),
    "rack_windows_1m": (("window_start", "last_frame_at", "computed_at"), ("last_seq",)),
    "tenant_minutes": (("window_start",), ()),
    "rack_health_log": (("as_of", "last_window_start", "logged_at"), ()),
}
# The current state: copied once, from the newest day.
_STATE_TABLES = ("open_gaps", "seq_bounds", "rack_link", "rack_health_now", "kafka_offsets")
_DERIVED_TABLES = ("gpu_windows_1m", "rack_windows_1m", "tenant_minutes")


@dataclass(frozen=True, slots=True)
class History:
    """A prepared benchmark database and its size."""

    days: int
    path: Path
    frames: int
    gpu_rows: int
    mib: float


@dataclass(frozen=True, slots=True)
class Write:
    """One timed late write."""

    ms: float
    derived_ms: float
    stored: StoredBatch


MODES = ("full", "raw", "cold")


@dataclass(slots=True)
class Timings:
    """The timed writes of one history size, per mode (see ``timed_write``), run by run."""

    writes: dict[str, list[Write]] = field(default_factory=lambda: {m: [] for m in MODES})

    def medians(self) -> dict[str, float]:
        """Median ms: full write, its derived update, raw rows only, full - raw (run by run), cold full write."""
        full, raw, cold = (self.writes[m] for m in MODES)
        return {
            "full": median([w.ms for w in full]),
            "derived": median([w.derived_ms for w in full]),
            "raw_only": median([w.ms for w in raw]),
            "recompute": median([f.ms - r.ms for f, r in zip(full, raw, strict=True)]),
            "cold": median([w.ms for w in cold]),
            "cold_derived": median([w.derived_ms for w in cold]),
        }


class TimedDerived(DerivedTables):
    """``DerivedTables`` that adds up the time of the steps the writer calls in one write, all inside its
    transaction: reading the touched windows' stored rows (``before_insert``, which starts a write), the
    recompute (``compute``, pure polars) and the replacement of the derived rows (``after_insert``)."""

    seconds = 0.0

    def before_insert(self, *args: Any, **kwargs: Any) -> StoredBefore:
        """The real step, timed; starts a new write's total."""
        self.seconds = 0.0
        return self._timed(super().before_insert, *args, **kwargs)

    def compute(self, *args: Any, **kwargs: Any) -> DerivedRows:
        """The real step, timed."""
        return self._timed(super().compute, *args, **kwargs)

    def after_insert(self, *args: Any, **kwargs: Any) -> DerivedUpdate:
        """The real step, timed."""
        return self._timed(super().after_insert, *args, **kwargs)

    def _timed(self, step: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        began = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - began


# ---------------------------------------------------------------------------------------------- the day


def rebased(batch: BatchToStore, seq_base: int) -> BatchToStore:
    """``batch`` with ``frame_seq`` offset by ``seq_base``: the rack booted that many frames earlier."""
    seq = pl.col("frame_seq") + seq_base
    return BatchToStore(
        batch.topic,
        batch.rack_rows.with_columns(seq),
        batch.gpu_rows.with_columns(seq),
        batch.dead_letters,
        batch.progress,
    )


def assembled(decoder: FrameDecoder, raw: RawBatch, seq_base: int) -> BatchToStore:
    """Decode, prepare and assemble ``raw`` as the daemon does, then rebase its sequence numbers."""
    decoded = decoder.decode(raw)
    batch = to_store(raw, decoded, prepare_batch(decoded.frames))
    if not batch.dead_letters.is_empty():
        raise RuntimeError(f"{batch.dead_letters.height} simulated messages were dead-lettered")
    return rebased(batch, seq_base)


@dataclass(slots=True)
class Held:
    """Messages not written with the day: those received during the outage, and the first live batch after it."""

    outage: list[SimMessage] = field(default_factory=list)
    after: list[SimMessage] = field(default_factory=list)


def chunks(messages: Iterator[SimMessage], outage: tuple[int, int], day_end: int, held: Held) -> Iterator[RawBatch]:
    """Batches of the day's received messages in order; outage and after-day messages (ms) go to ``held``."""
    raw, offset = RawBatch(TOPIC), 0
    for message in messages:
        if message.timestamp_ms >= day_end:
            held.after.append(message)
            if len(held.after) == BATCH_MESSAGES:
                break
            continue
        if outage[0] <= message.timestamp_ms < outage[1]:
            held.outage.append(message)
            continue
        raw.append(0, offset, message.timestamp_ms, message.key, message.value)
        offset += 1
        if len(raw.offsets) == BATCH_MESSAGES:
            yield raw
            raw = RawBatch(TOPIC)
    if raw.offsets:
        yield raw


def live(messages: list[SimMessage], first_offset: int) -> RawBatch:
    """``messages`` as one batch with offsets from ``first_offset``."""
    raw = RawBatch(TOPIC)
    for i, message in enumerate(messages):
        raw.append(0, first_offset + i, message.timestamp_ms, message.key, message.value)
    return raw


def playback(held: list[SimMessage], first_offset: int, received_from_ms: int) -> RawBatch:
    """The held-back frames as played back from on-board storage: ``stored = true``, 10 frames/s per rack."""
    codec = ContractCodec()
    queued: dict[bytes, int] = {}
    played: list[tuple[int, SimMessage]] = []
    for message in held:
        schema_id, record = codec.decode(message.value)
        record["stored"] = True
        position = queued.get(message.key, 0)
        queued[message.key] = position + 1
        at_ms = received_from_ms + position * 1000 // PLAYBACK_PER_S
        played.append((at_ms, SimMessage(message.key, codec.encode(schema_id, record), at_ms)))
    played.sort(key=lambda p: p[0])
    return live([m for _, m in played], first_offset)


@dataclass(frozen=True, slots=True)
class Batches:
    """What is written after the day: the first live batch after it, then the late (played back) batch."""

    live: BatchToStore
    late: BatchToStore


def frames_per_day(frame_interval_s: int) -> int:
    """A rack's frames (sequence numbers) in one day."""
    return DAY_S // frame_interval_s


def build_day(path: Path, racks: int, days: int, late_minutes: int, frame_interval_s: int) -> tuple[Batches, int]:
    """Write the newest day, outage held back, through the writer; returns the batches after it and its frames."""
    day = FIRST_DAY + timedelta(days=days - 1)
    seq_base = (days - 1) * frames_per_day(frame_interval_s)
    config = SimulationConfig(
        satellites=1,
        racks_per_satellite=racks,
        # and one live batch after the day
        duration_s=DAY_S + (BATCH_MESSAGES // racks) * frame_interval_s + 60,
        frame_interval_s=frame_interval_s,
        contact="continuous",
        seed=7,
        duplicate_rate=0.0,
        loss_rate=0.0,
        start=day,
    )
    lo = day + OUTAGE_STARTS_AT
    outage = (_ms(lo), _ms(lo + timedelta(minutes=late_minutes)))
    decoder = FrameDecoder(SchemaRegistry(DEFAULT_CONTRACT_DIR))
    con = open_database(path)
    writer = HistoryWriter(con, DerivedTables(con))
    held = Held()
    frames = offset = 0
    try:
        for raw in chunks(generate(config)[0], outage, _ms(day + timedelta(days=1)), held):
            frames += writer.write(assembled(decoder, raw, seq_base)).frames_stored
            offset = raw.offsets[-1] + 1
        con.execute("CHECKPOINT")
    finally:
        con.close()
    after = assembled(decoder, live(held.after, offset), seq_base)
    # Ten minutes on: the ground's clock is past any refresh interval of health now, so the write judges it too.
    played_from = held.after[-1].timestamp_ms + 600_000
    late = assembled(decoder, playback(held.outage, offset + len(held.after), played_from), seq_base)
    return Batches(after, late), frames


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


# ---------------------------------------------------------------------------------------------- histories


def played_back(day: Path, filled: Path, late: BatchToStore) -> StoredBatch:
    """``filled``: a copy of ``day`` with the late batch written through the writer (the older days' look)."""
    shutil.copyfile(day, filled)
    con = open_database(filled)
    try:
        stored = HistoryWriter(con, DerivedTables(con)).write(late)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return stored


def build_history(path: Path, days: int, day: Path, filled: Path, frame_interval_s: int) -> History:
    """A database of ``days`` days: ``days - 1`` shifted copies of ``filled``, then ``day``, then ``day``'s state."""
    seqs = frames_per_day(frame_interval_s)
    con = open_database(path, memory_limit="2GB")
    try:
        con.execute(f"ATTACH '{day}' AS newest (READ_ONLY)")
        con.execute(f"ATTACH '{filled}' AS older (READ_ONLY)")
        for back in range(days - 1, -1, -1):
            source = "newest" if back == 0 else "older"
            for table, (stamps, seq_columns) in _SHIFTED.items():
                shifts = [f"{c} - to_seconds({back * DAY_S}) AS {c}" for c in stamps]
                shifts += [f"{c} - {back * seqs} AS {c}" for c in seq_columns]
                con.execute(f"INSERT INTO {table} SELECT * REPLACE ({', '.join(shifts)}) FROM {source}.{table}")
        for table in _STATE_TABLES:
            con.execute(f"INSERT INTO {table} SELECT * FROM newest.{table}")
        con.execute("UPDATE seq_bounds SET min_seq = min_seq - ?", [(days - 1) * seqs])
        con.execute("DETACH newest")
        con.execute("DETACH older")
        roll_up(con)  # the hours a daemon would have rolled up (not timed)
        con.execute("CHECKPOINT")
        frames = _count(con, "SELECT count(*) FROM rack_frames")
        gpu_rows = _count(con, "SELECT count(*) FROM gpu_samples")
    finally:
        con.close()
    return History(days, path, frames, gpu_rows, path.stat().st_size / 2**20)


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------------------------- measuring


def timed_write(history: History, batches: Batches, work: Path, mode: str, keep: Path | None = None) -> Write:
    """Write the late batch into a fresh copy of ``history`` and time it.

    ``mode``: ``full`` (with the derived tables) or ``raw`` (rows only, ``HistoryWriter(con, None)``), both
    after the connection wrote the live batch untimed, as a running daemon has; ``cold``: full, as the first
    write after opening the file. The copy is deleted afterwards, or renamed to ``keep`` if that is free.
    """
    copy = work / f"run-{history.days}d.duckdb"
    shutil.copyfile(history.path, copy)
    with copy.open("rb+") as written:  # flushed now, not by the kernel during the timed write
        os.fsync(written.fileno())
    con = open_database(copy)
    try:
        derived = TimedDerived(con)
        writer = HistoryWriter(con, derived)
        if mode != "cold":
            writer.write(batches.live)
        if mode == "raw":
            writer = HistoryWriter(con, None)
        began = time.perf_counter()
        stored = writer.write(batches.late)
        elapsed = time.perf_counter() - began
    finally:
        con.close()
    if keep is not None and not keep.exists():
        copy.rename(keep)
    else:
        copy.unlink()
    return Write(elapsed * 1000, derived.seconds * 1000 if mode != "raw" else 0.0, stored)


def compare(work: Path, histories: list[History], day_start: datetime) -> dict[str, int]:
    """Rows of the newest day's derived tables that differ between the histories after the late write."""
    con = duckdb.connect()
    differing: dict[str, int] = {}
    try:
        con.execute("SET TimeZone = 'UTC'")
        names = []
        for h in histories:
            con.execute(f"ATTACH '{work / f'after-{h.days}d.duckdb'}' AS h{h.days} (READ_ONLY)")
            names.append(f"h{h.days}")
        a, b = names
        for table in _DERIVED_TABLES:
            columns = ", ".join(c for c in _columns(con, a, table) if c != "computed_at")

            def day_rows(db: str, table: str = table, columns: str = columns) -> str:
                return f"SELECT {columns} FROM {db}.{table} WHERE window_start >= ?"

            sql = f"""SELECT (SELECT count(*) FROM ({day_rows(a)} EXCEPT ALL {day_rows(b)}))
                + (SELECT count(*) FROM ({day_rows(b)} EXCEPT ALL {day_rows(a)}))"""
            row = con.execute(sql, [day_start] * 4).fetchone()
            differing[table] = int(row[0]) if row else -1
        for table in ("rack_frames", "gpu_samples"):
            counts = {
                n: _count(con, f"SELECT count(*) FROM {n}.{table} WHERE sampled_at >= '{day_start.isoformat()}'")
                for n in names
            }
            differing[f"{table}_newest_day_count"] = abs(counts[a] - counts[b])
        for n in names:
            differing[f"open_gaps_{n}"] = _count(con, f"SELECT count(*) FROM {n}.open_gaps")
    finally:
        con.close()
    return differing


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? ORDER BY column_index",
        [database, table],
    ).fetchall()
    return [str(r[0]) for r in rows]


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    """Build the histories once, then alternate timed late writes over fresh copies of them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--racks", type=int, default=2, help="racks on the satellite (one simulated day each)")
    parser.add_argument("--runs", type=int, default=5, help="timed writes per history size and mode")
    parser.add_argument("--days", type=int, default=7, help="days of the long history (the short one is 1)")
    parser.add_argument("--late-minutes", type=int, default=20, help="length of the outage played back late")
    parser.add_argument(
        "--frame-interval-s",
        type=int,
        default=1,
        help="simulated seconds between a rack's frames (> 1: a sparser, faster-built history; for smoke runs)",
    )
    args = parser.parse_args()
    if args.days < 2 or args.runs < 1 or not 1 <= args.racks <= 40 or not 0 < args.late_minutes <= 600:
        parser.error("need --days >= 2, --runs >= 1, 1 <= --racks <= 40, 0 < --late-minutes <= 600")
    if not 1 <= args.frame_interval_s <= 60 or DAY_S % args.frame_interval_s:
        parser.error("need --frame-interval-s between 1 and 60 that divides a day (86,400 s)")
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="late-recompute-"))
    try:
        day, filled = work / "day.duckdb", work / "day-played-back.duckdb"
        batches, day_frames = build_day(day, args.racks, args.days, args.late_minutes, args.frame_interval_s)
        late = batches.late
        print(
            f"newest day written through the writer: {args.racks} racks, {day_frames:,} frames "
            f"({time.perf_counter() - began:.0f} s); late batch: {late.rack_rows.height:,} frames, "
            f"{late.gpu_rows.height:,} GPU rows sampled {args.late_minutes} min from 12:00, received after "
            f"a live batch of {batches.live.rack_rows.height:,} frames that follows the day",
            flush=True,
        )
        played_back(day, filled, late)
        histories = [
            build_history(work / f"history-{d}d.duckdb", d, day, filled, args.frame_interval_s) for d in (1, args.days)
        ]
        for path in (day, filled):
            path.unlink()
        for h in histories:
            print(f"history {h.days} d: {h.frames:,} frames, {h.gpu_rows:,} GPU rows, {h.mib:,.0f} MiB", flush=True)
        print(f"histories built in {time.perf_counter() - began:.0f} s", flush=True)
        for mode in MODES:  # untimed: the first writes of a process pay one-off costs (imports, plans)
            timed_write(histories[0], batches, work, mode)
        timings = {h.days: Timings() for h in histories}
        for run in range(args.runs):
            for h in histories if run % 2 == 0 else histories[::-1]:
                keep = work / f"after-{h.days}d.duckdb"  # the first full write is kept for the comparison
                done = {m: timed_write(h, batches, work, m, keep if m == "full" else None) for m in MODES}
                for mode, write in done.items():
                    timings[h.days].writes[mode].append(write)
                print(
                    f"run {run + 1}, {h.days} d: full write {done['full'].ms:6.0f} ms "
                    f"(derived update {done['full'].derived_ms:5.0f} ms), raw rows only {done['raw'].ms:5.0f} ms; "
                    f"first write after opening the file {done['cold'].ms:6.0f} ms",
                    flush=True,
                )
        differing = compare(work, histories, FIRST_DAY + timedelta(days=args.days - 1))
        summary = report(histories, timings, differing, batches)
        summary["racks"] = args.racks
        summary["runs"] = args.runs
        summary["seconds"] = round(time.perf_counter() - began, 1)
        summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(summary))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(
    histories: list[History], timings: dict[int, Timings], differing: dict[str, int], batches: Batches
) -> dict[str, object]:
    """Print the medians and ratios; return the JSON summary."""
    short, long = histories
    medians = {h.days: timings[h.days].medians() for h in histories}
    ratio = {k: round(medians[long.days][k] / medians[short.days][k], 3) for k in medians[short.days]}
    # Per mode, every write in both sizes must have stored and recomputed the same.
    same_work = all(len({w.stored for h in histories for w in timings[h.days].writes[m]}) == 1 for m in MODES)
    update = timings[short.days].writes["full"][0].stored.derived
    windows = update.windows if update else 0
    identical = all(v == 0 for k, v in differing.items() if not k.startswith("open_gaps"))
    for h in histories:
        m = medians[h.days]
        print(
            f"{h.days} d of history ({h.frames:,} frames, {h.gpu_rows:,} GPU rows, {h.mib:,.0f} MiB), medians: "
            f"full write {m['full']:.0f} ms, derived update {m['derived']:.0f} ms, raw rows only "
            f"{m['raw_only']:.0f} ms, full - raw {m['recompute']:.0f} ms; first write after opening "
            f"{m['cold']:.0f} ms (derived update {m['cold_derived']:.0f} ms)"
        )
    print(
        f"ratio {long.days} d / 1 d: full write {ratio['full']:.2f}, derived update {ratio['derived']:.2f}, "
        f"raw rows only {ratio['raw_only']:.2f}, full - raw {ratio['recompute']:.2f}; "
        f"first write after opening {ratio['cold']:.2f} (derived update {ratio['cold_derived']:.2f})"
    )
    print(
        f"per late write: {update}, {windows} rack windows recomputed; same in every run and size: {same_work}; "
        f"newest day's derived rows identical in both sizes after the write: {identical} {differing}"
    )
    late = batches.late
    return {
        "history_days": [h.days for h in histories],
        "frames": [h.frames for h in histories],
        "gpu_rows": [h.gpu_rows for h in histories],
        "db_mib": [round(h.mib) for h in histories],
        "late_frames": late.rack_rows.height,
        "late_gpu_rows": late.gpu_rows.height,
        "windows_recomputed": windows,
        "rejudged": update.rejudged if update else 0,
        "late_write_ms_median": [round(medians[h.days]["full"], 1) for h in histories],
        "derived_ms_median": [round(medians[h.days]["derived"], 1) for h in histories],
        "raw_only_ms_median": [round(medians[h.days]["raw_only"], 1) for h in histories],
        "recompute_ms_median": [round(medians[h.days]["recompute"], 1) for h in histories],
        "first_write_after_open_ms_median": [round(medians[h.days]["cold"], 1) for h in histories],
        "ratio_7d_vs_1d": ratio,
        "same_work": same_work,
        "derived_rows_identical": identical,
    }


if __name__ == "__main__":
    main()
