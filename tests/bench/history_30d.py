"""The query benchmarks' dataset: 30 days of history for 1,000 racks, built through the real writer.

1,000 racks at one frame per second for 30 days would be 166 billion GPU samples, far beyond one machine,
so time is accelerated: each rack sends one frame per ``--frame-interval`` seconds (default 600: every 10
minutes) in the newest ``--dense-days`` (2) days, the span the saved queries look at (at most 24 hours
back), and one per ``--old-frame-interval`` (1,200: every 20 minutes) in the 28 days before. That makes
2.30 M frames and 147 M GPU samples. Every stored frame is a real 64-GPU frame and every derived row one
the daemon computed; what is thinner than live is time: a GPU-minute window holds one sample (live: 60)
and only one minute in ten (twenty) has a window, so a span of hours holds a tenth (twentieth) of the
minute rows a live fleet would have. Why not every 10 minutes throughout: the file would be about 31 GB
(a GPU-minute window row takes about 75 bytes), and the benches ingest into a working copy of it, for
which the 65 GB this machine shares would not suffice. Consequence of 20 minutes: counter increments
(ECC, NVLink, SEU) look back at most 10 minutes (``processing.counters``), so the older days have none.

How it is built (the method of ``tests.bench.late_recompute``), per span of equal frame interval:

1. **Its newest day, real.** The simulator (``frame_interval_s``) generates the racks (250 satellites of
   4, continuous contact, no loss or duplicates) for that day. Its messages are decoded, prepared and
   assembled exactly as the daemon does and written through ``HistoryWriter`` with ``DerivedTables`` in
   batches of 4,000 messages (the daemon's default) into a file of its own, so the day's rollups, tenant
   minutes, health log, gaps, link state and health "now" are those the daemon writes. The racks booted
   when the history starts: ``frame_seq`` and the Kafka offsets are rebased by the frames of the days
   before (one boot epoch, one continuous sequence, one partition).
2. **Its other days, shifted copies.** The day's rows are copied into a fresh migrated file, oldest day
   first, table by table in ingestion order, each shifted back by k days (timestamps and ``window_start``
   by k days, ``frame_seq``/``last_seq`` by k days of frames, Kafka offsets by k days of messages).
3. The current-state tables (gaps, sequence bounds, link, health now, offsets) come from the newest real
   day, with the ``kafka_offsets`` counters covering all days. Any other table must be empty (checked, so
   a table added to the schema is not silently left out). ``CHECKPOINT``; the file's size and every
   table's rows go to ``manifest.json`` beside it.

The invariants the concurrency bench checks in every snapshot hold for the whole file (checked):
``count(gpu_samples) = sum(gpu_windows_1m.samples) = 64 x count(rack_frames)`` and ``count(rack_frames) =
sum(kafka_offsets.frames_stored)``.

The racks keep boot epoch 0; a bench streaming more frames of the same racks after ``HISTORY_END`` uses
``boot_epoch=1`` (they rebooted), so its frame keys are new. All 30 days of raw rows stay in DuckDB (the
benches run the daemon with retention off); with the default retention only 7 would.

    .venv/bin/python -m tests.bench.history_30d --out /tmp/ow-bench/h30 [--racks 1000] [--days 30]
        [--dense-days 2] [--frame-interval 600] [--old-frame-interval 1200] [--rebuild]

The dataset is cached: one already in ``--out`` with the same parameters is reused. With the defaults the
build takes about 5 minutes on 2 cores and the file is about 17 GB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from ingest.codec import FrameDecoder, RawBatch
from ingest.registry import SchemaRegistry
from ingest.settings import DEFAULT_CONTRACT_DIR
from orbitwatch.assemble import to_store
from processing.rows import prepare_batch
from simulator.config import GPUS_PER_RACK, SimulationConfig
from simulator.messages import SimMessage, generate
from storage.database import open_database
from storage.derived import DerivedTables
from storage.rollups import open_rollups
from storage.schema import LATEST_VERSION
from storage.writer import BatchToStore, HistoryWriter

DAY_S = 86_400
HISTORY_END = datetime(2026, 11, 1, tzinfo=UTC)
"""The history ends here (exclusive); streams that continue it start here, with ``boot_epoch=1``."""
RACKS_PER_SATELLITE = 4
TOPIC = "history-30d"
BATCH_MESSAGES = 4000
HISTORY_FILE = "history.duckdb"
MANIFEST = "manifest.json"

# Columns shifted back by k days when the newest day is copied as an older day: timestamps by k days,
# sequence numbers by k days of frames, Kafka offsets by k days of messages.
_SHIFTED: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "rack_frames": (("sampled_at", "received_at", "ingested_at"), ("frame_seq",), ("kafka_offset",)),
    "gpu_samples": (("sampled_at",), ("frame_seq",), ()),
    "gpu_windows_1m": (("window_start", "computed_at"), ("last_seq",), ()),
    "rack_windows_1m": (("window_start", "last_frame_at", "computed_at"), ("last_seq",), ()),
    "tenant_minutes": (("window_start",), (), ()),
    "rack_health_log": (("as_of", "last_window_start", "logged_at"), (), ()),
}
# The current state: copied once, from the newest day.
_STATE_TABLES = ("open_gaps", "seq_bounds", "rack_link", "rack_health_now", "kafka_offsets")
# Rolled up again over the whole month once its windows are in (``storage.hourly``: the first roll of a
# history covers all of it), since each copied day's newest hours were not rolled in the real day.
_ROLLED = ("gpu_ecc_hours", "gpu_ecc_slices", "tenant_hours", "rollup_marks")
_NOT_COPIED = ("schema_migrations", *_ROLLED)


@dataclass(frozen=True, slots=True)
class Span:
    """Consecutive days of equal frame interval: days ``first_day`` .. ``first_day + days - 1`` of the history."""

    first_day: int
    days: int
    interval: int

    @property
    def per_day(self) -> int:
        """Frames per rack and day."""
        return DAY_S // self.interval


def spans(days: int, dense_days: int, interval: int, old_interval: int) -> list[Span]:
    """The history's spans, oldest first: ``days - dense_days`` at ``old_interval``, then ``dense_days``."""
    layout = [Span(0, days - dense_days, old_interval), Span(days - dense_days, dense_days, interval)]
    return [span for span in layout if span.days > 0]


@dataclass(frozen=True, slots=True)
class Dataset:
    """A built history and what it holds (``manifest.json``)."""

    path: Path
    racks: int
    days: int
    dense_days: int
    frame_interval_s: int
    old_frame_interval_s: int
    start: datetime
    end: datetime
    frames: int
    gpu_samples: int
    rows: dict[str, int]
    bytes: int
    build_s: float
    schema_version: int = 7
    """The schema the file has (a manifest without it: 7); ``load`` upgrades an older file in place."""

    @property
    def gib(self) -> float:
        """Size on disk in GiB."""
        return self.bytes / 2**30

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        """What determines the dataset's content."""
        return (self.racks, self.days, self.dense_days, self.frame_interval_s, self.old_frame_interval_s)

    def describe(self) -> str:
        """One line: what the dataset is, for the benches' output."""
        older = self.days - self.dense_days
        rate = f"one frame per rack every {self.frame_interval_s} s in the newest {self.dense_days} days"
        if older:
            rate += f", every {self.old_frame_interval_s} s in the {older} before"
        return (
            f"{self.racks:,} racks, {self.days} days ({self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}), {rate}: "
            f"{self.frames:,} frames, {self.gpu_samples:,} GPU samples, {self.rows['gpu_windows_1m']:,} GPU "
            f"windows, {self.rows['rack_windows_1m']:,} rack windows, {self.rows['tenant_minutes']:,} tenant "
            f"minutes; {self.gib:.1f} GiB on disk ({self.bytes:,} bytes)"
        )

    def save(self) -> None:
        """Write ``manifest.json`` beside the history file."""
        data = asdict(self)
        data.update(path=self.path.name, start=self.start.isoformat(), end=self.end.isoformat())
        (self.path.parent / MANIFEST).write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, out: Path) -> Dataset | None:
        """The dataset in ``out``, or None when it has not been (completely) built."""
        manifest = out / MANIFEST
        if not manifest.exists() or not (out / HISTORY_FILE).exists():
            return None
        data = json.loads(manifest.read_text())
        data.update(
            path=out / data["path"],
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
        )
        dataset = cls(**data)
        return dataset if dataset.schema_version == LATEST_VERSION else dataset.upgraded()

    def upgraded(self) -> Dataset:
        """The file migrated to ``LATEST_VERSION`` (as a daemon opening it would), its hourly rollups rolled
        (a daemon's first roll), checkpointed; the manifest saved again."""
        print(f"{self.path}: schema {self.schema_version}, upgrading to {LATEST_VERSION}", flush=True)
        con = open_database(self.path, memory_limit="4GB")
        try:
            roll_up(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        upgraded = replace(self, schema_version=LATEST_VERSION, bytes=self.path.stat().st_size)
        upgraded.save()
        return upgraded


def stream_config(racks: int, seconds: float, seed: int = 11) -> SimulationConfig:
    """The same racks continuing live (1 frame/s) after the history: rebooted (epoch 1), continuous contact."""
    return SimulationConfig(
        satellites=racks // RACKS_PER_SATELLITE,
        racks_per_satellite=RACKS_PER_SATELLITE,
        duration_s=seconds,
        start=HISTORY_END,
        boot_epoch=1,
        contact="continuous",
        seed=seed,
        duplicate_rate=0.0,
        loss_rate=0.0,
    )


# ---------------------------------------------------------------------------------------------- real days


def raw_batches(messages: Iterator[SimMessage], first_offset: int, size: int = BATCH_MESSAGES) -> Iterator[RawBatch]:
    """``messages`` in receive order as the daemon's batches of ``size``, on one partition from ``first_offset``."""
    raw, offset = RawBatch(TOPIC), first_offset
    for message in messages:
        raw.append(0, offset, message.timestamp_ms, message.key, message.value)
        offset += 1
        if len(raw.offsets) == size:
            yield raw
            raw = RawBatch(TOPIC)
    if raw.offsets:
        yield raw


def assembled(decoder: FrameDecoder, raw: RawBatch, seq_base: int) -> BatchToStore:
    """Decode, prepare and assemble as the daemon does; then rebase ``frame_seq`` by ``seq_base``."""
    decoded = decoder.decode(raw)
    batch = to_store(raw, decoded, prepare_batch(decoded.frames))
    if not batch.dead_letters.is_empty():
        raise RuntimeError(f"{batch.dead_letters.height} simulated messages were dead-lettered")
    seq = pl.col("frame_seq") + seq_base
    return BatchToStore(
        batch.topic,
        batch.rack_rows.with_columns(seq),
        batch.gpu_rows.with_columns(seq),
        batch.dead_letters,
        batch.progress,
    )


def build_day(path: Path, racks: int, span: Span, start: datetime, seq_base: int, seed: int) -> int:
    """Write ``span``'s newest day (from ``start``) through the writer with the derived tables; returns its frames.

    ``seq_base``: frames per rack before that day; the Kafka offsets start at ``racks * seq_base``.
    """
    config = SimulationConfig(
        satellites=racks // RACKS_PER_SATELLITE,
        racks_per_satellite=RACKS_PER_SATELLITE,
        duration_s=DAY_S,
        frame_interval_s=span.interval,
        start=start,
        contact="continuous",
        seed=seed,
        duplicate_rate=0.0,
        loss_rate=0.0,
    )
    decoder = FrameDecoder(SchemaRegistry(DEFAULT_CONTRACT_DIR))
    con = open_database(path, memory_limit="4GB")
    frames = 0
    began = time.perf_counter()
    try:
        writer = HistoryWriter(con, DerivedTables(con))
        for n, raw in enumerate(raw_batches(generate(config)[0], racks * seq_base)):
            frames += writer.write(assembled(decoder, raw, seq_base)).frames_stored
            if n % 10 == 9:
                print(
                    f"  {start:%Y-%m-%d}: {frames:,} frames written ({time.perf_counter() - began:.0f} s)", flush=True
                )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    if frames != racks * span.per_day:
        raise RuntimeError(f"the day stored {frames} frames, not {racks} racks x {span.per_day}")
    return frames


# ---------------------------------------------------------------------------------------------- the month


def build_history(path: Path, real_days: list[tuple[Span, Path]], racks: int) -> dict[str, int]:
    """A fresh file of every span's days: shifted copies of its real (newest) day, oldest first; then the state."""
    con = open_database(path, memory_limit="4GB")
    try:
        newest = real_days[-1][1]
        con.execute(f"ATTACH '{newest}' AS newest (READ_ONLY)")
        tables = [
            str(r[0])
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'newest' ORDER BY table_name"
            ).fetchall()
        ]
        for table in tables:
            if table not in (*_SHIFTED, *_STATE_TABLES, *_NOT_COPIED) and _count(con, f"newest.{table}"):
                raise RuntimeError(f"table {table} has rows but the builder does not know how to copy it")
        con.execute("DETACH newest")
        began = time.perf_counter()
        for span, day in real_days:
            con.execute(f"ATTACH '{day}' AS real_day (READ_ONLY)")
            for back in range(span.days - 1, -1, -1):
                for table, (stamps, seqs, offsets) in _SHIFTED.items():
                    shifts = [f"{c} - to_days({back}) AS {c}" for c in stamps]
                    shifts += [f"{c} - {back * span.per_day} AS {c}" for c in seqs]
                    shifts += [f"{c} - {back * span.per_day * racks} AS {c}" for c in offsets]
                    con.execute(f"INSERT INTO {table} SELECT * REPLACE ({', '.join(shifts)}) FROM real_day.{table}")
                done = span.first_day + span.days - back
                print(f"  day {done} of the history stored ({time.perf_counter() - began:.0f} s)", flush=True)
            con.execute("DETACH real_day")
        con.execute(f"ATTACH '{newest}' AS newest (READ_ONLY)")
        for table in _STATE_TABLES:
            con.execute(f"INSERT INTO {table} SELECT * FROM newest.{table}")
        con.execute("DETACH newest")
        roll_up(con)
        frames = _count(con, "rack_frames")
        con.execute("UPDATE seq_bounds SET min_seq = 0")  # one boot epoch since the history began
        con.execute("UPDATE kafka_offsets SET messages = ?, frames_stored = ?", [frames, frames])
        con.execute("CHECKPOINT")
        rows = {t: _count(con, t) for t in tables if t != "schema_migrations"}
        check_invariants(con)
    finally:
        con.close()
    return rows


def roll_up(con: duckdb.DuckDBPyConnection) -> None:
    """Roll the whole history into the rollups not covering it yet, as a daemon's first roll would."""
    (newest,) = con.execute("SELECT max(window_start) FROM gpu_windows_1m").fetchall()[0]
    for rollups in open_rollups(con).values() if newest is not None else ():
        for rollup in rollups:
            began = time.perf_counter()
            buckets = rollup.roll(newest)
            print(
                f"  {buckets} buckets of {rollup.rollup.width} rolled into {rollup.name}"
                f" ({time.perf_counter() - began:.0f} s)",
                flush=True,
            )


def check_invariants(con: duckdb.DuckDBPyConnection) -> None:
    """Raw rows, windows, frames and offsets agree (what the concurrency bench checks per snapshot)."""
    row = con.execute(INVARIANT_SQL).fetchone()
    assert row is not None
    raw, windowed, frames, offsets_frames = (int(v or 0) for v in row)
    if not raw == windowed == GPUS_PER_RACK * frames or frames != offsets_frames:
        raise RuntimeError(f"invariants broken: {raw=} {windowed=} {frames=} {offsets_frames=}")


INVARIANT_SQL = """SELECT (SELECT count(*) FROM gpu_samples) AS raw,
    (SELECT coalesce(sum(samples), 0) FROM gpu_windows_1m) AS windowed,
    (SELECT count(*) FROM rack_frames) AS frames,
    (SELECT coalesce(sum(frames_stored), 0) FROM kafka_offsets) AS offsets_frames"""
"""One statement, so one snapshot: a half-written batch would show raw != windowed or frames != offsets."""


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------------------------- main


def build(out: Path, racks: int, days: int, dense_days: int, interval: int, old_interval: int) -> Dataset:
    """Build the dataset into ``out`` (replacing what is there) and save its manifest."""
    if racks % RACKS_PER_SATELLITE or racks <= 0:
        raise ValueError(f"racks must be a positive multiple of {RACKS_PER_SATELLITE}")
    if DAY_S % interval or DAY_S % old_interval:
        raise ValueError("the frame intervals must divide a day (86,400 s)")
    if not 1 <= dense_days <= days:
        raise ValueError("need 1 <= dense days <= days")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    began = time.perf_counter()
    history_start = HISTORY_END - timedelta(days=days)
    real_days, seq_base = [], 0
    for n, span in enumerate(spans(days, dense_days, interval, old_interval)):
        newest = span.first_day + span.days - 1
        day = out / f"real-day-{n}.duckdb"
        base = seq_base + (span.days - 1) * span.per_day
        frames = build_day(day, racks, span, history_start + timedelta(days=newest), base, seed=30 + n)
        real_days.append((span, day))
        seq_base += span.days * span.per_day
        took = time.perf_counter() - began
        print(f"day {newest + 1} written through the writer: {frames:,} frames ({took:.0f} s)", flush=True)
    path = out / HISTORY_FILE
    rows = build_history(path, real_days, racks)
    for _, day in real_days:
        day.unlink()
    dataset = Dataset(
        path=path,
        racks=racks,
        days=days,
        dense_days=dense_days,
        frame_interval_s=interval,
        old_frame_interval_s=old_interval,
        start=history_start,
        end=HISTORY_END,
        frames=rows["rack_frames"],
        gpu_samples=rows["gpu_samples"],
        rows=rows,
        bytes=path.stat().st_size,
        build_s=round(time.perf_counter() - began, 1),
        schema_version=LATEST_VERSION,
    )
    dataset.save()
    return dataset


def ensure(
    out: Path,
    racks: int = 1000,
    days: int = 30,
    dense_days: int = 2,
    interval: int = 600,
    old_interval: int = 1200,
    rebuild: bool = False,
) -> Dataset:
    """The cached dataset in ``out`` if it was built with these parameters, else a fresh build."""
    dataset = None if rebuild else Dataset.load(out)
    if dataset is not None and dataset.key == (racks, days, dense_days, interval, old_interval):
        return dataset
    if dataset is not None:
        print(f"{out} holds another dataset ({dataset.describe()}); rebuilding", flush=True)
    return build(out, racks, days, dense_days, interval, old_interval)


def main() -> None:
    """Build (or find) the dataset and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory of the dataset (created)")
    parser.add_argument("--racks", type=int, default=1000, help="racks (4 per satellite)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--dense-days", type=int, default=2, help="newest days at --frame-interval")
    parser.add_argument("--frame-interval", type=int, default=600, help="seconds between a rack's frames, newest days")
    parser.add_argument("--old-frame-interval", type=int, default=1200, help="the same in the older days")
    parser.add_argument("--rebuild", action="store_true", help="build even if a dataset is there")
    args = parser.parse_args()
    dataset = ensure(
        args.out, args.racks, args.days, args.dense_days, args.frame_interval, args.old_frame_interval, args.rebuild
    )
    print(dataset.describe())
    print(f"built in {dataset.build_s:.0f} s; rows: {json.dumps(dataset.rows)}")
    summary = {"racks": dataset.racks, "days": dataset.days, "frames": dataset.frames, "bytes": dataset.bytes}
    print(json.dumps({**summary, "gpu_samples": dataset.gpu_samples, "build_s": round(dataset.build_s, 1)}))


if __name__ == "__main__":
    main()
