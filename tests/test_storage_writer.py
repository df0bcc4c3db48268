"""DuckDB history: migrations, atomic batch writes with offsets, dedup by primary key, file locking."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingest.codec import FrameDecoder, RawBatch
from orbitwatch import assemble
from processing.rows import prepare_batch
from storage.database import open_database
from storage.errors import DatabaseLockedError, SchemaVersionError, StorageError
from storage.schema import LATEST_VERSION, MIGRATIONS, current_version, migrate
from storage.writer import BatchToStore, HistoryWriter, PartitionOutcomes, StoredBatch
from tests.helpers.frames import (
    DEFAULT_SAMPLED_AT,
    GPUS_PER_FRAME,
    TOPIC,
    Frame,
    encode_message,
    rack_frame,
    raw_batch,
    registry,
)


@pytest.fixture(scope="module")
def decoder() -> FrameDecoder:
    return FrameDecoder(registry())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history" / "orbitwatch.duckdb"


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_database(db_path)
    yield connection
    connection.close()


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def offsets_table(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[int, int, int, int, int]]:
    """Per partition: next_offset, messages, frames_stored, duplicates_dropped, dead_letters."""
    rows = con.execute(
        "SELECT kafka_partition, next_offset, messages, frames_stored, duplicates_dropped, dead_letters "
        "FROM kafka_offsets WHERE topic = ? ORDER BY kafka_partition",
        [TOPIC],
    ).fetchall()
    return {int(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows}


def to_store(decoder: FrameDecoder, raw: RawBatch) -> BatchToStore:
    """Decode, prepare and assemble a batch exactly as the daemon does."""
    decoded = decoder.decode(raw)
    return assemble.to_store(raw, decoded, prepare_batch(decoded.frames))


def frames(seqs: range | list[int], *, boot_epoch: int = 0, **overrides: Any) -> list[Frame]:
    return [
        rack_frame(
            frame_seq=s,
            boot_epoch=boot_epoch,
            sampled_at=DEFAULT_SAMPLED_AT + timedelta(seconds=s),
            **overrides,
        )
        for s in seqs
    ]


def batch_of(values: list[bytes | None], partitions: list[int], offsets: list[int] | None = None) -> RawBatch:
    if offsets is None:
        seen: dict[int, int] = {}
        offsets = []
        for p in partitions:
            offsets.append(seen.get(p, 0))
            seen[p] = seen.get(p, 0) + 1
    return raw_batch(values, partition=partitions, offsets=offsets)


def assert_counters_add_up(con: duckdb.DuckDBPyConnection) -> None:
    for partition, (_, messages, stored, duplicates, dead) in offsets_table(con).items():
        assert messages == stored + duplicates + dead, partition


# ---------------------------------------------------------------------------------------------- migrations


def test_migrations_are_recorded_and_idempotent(db_path: Path) -> None:
    con = open_database(db_path)
    try:
        recorded = con.execute("SELECT version, description FROM schema_migrations ORDER BY version").fetchall()
        assert recorded == [(m.version, m.description) for m in MIGRATIONS]
        assert current_version(con) == LATEST_VERSION
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"rack_frames", "gpu_samples", "dead_letters", "kafka_offsets", "schema_migrations"} <= tables
        assert migrate(con) == []
    finally:
        con.close()
    again = open_database(db_path)
    try:
        assert count(again, "SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
        assert migrate(again) == []
        assert current_version(again) == LATEST_VERSION
    finally:
        again.close()


def test_fresh_database_migrates_from_zero(tmp_path: Path) -> None:
    raw = duckdb.connect(str(tmp_path / "plain.duckdb"))
    try:
        assert current_version(raw) == 0
        assert migrate(raw) == [m.version for m in MIGRATIONS]
        assert migrate(raw) == []
    finally:
        raw.close()


def test_newer_schema_version_is_refused(db_path: Path) -> None:
    con = open_database(db_path)
    con.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', now())", [LATEST_VERSION + 1])
    con.close()
    with pytest.raises(SchemaVersionError, match=f"version {LATEST_VERSION + 1}, newer"):
        open_database(db_path)


def test_read_only_open_of_missing_file_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no history database"):
        open_database(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


# ---------------------------------------------------------------------------------------------- writes


def test_write_stores_rows_dead_letters_and_offsets(con: duckdb.DuckDBPyConnection, decoder: FrameDecoder) -> None:
    values: list[bytes | None] = [encode_message(f, 2) for f in frames(range(6))]
    values.append(encode_message(frames([2])[0], 2))  # in-batch copy of seq 2 on partition 1: dropped
    values.append(b"\x00\x00\x00\x00\x63" + b"garbage")  # unknown schema id 99 (partition 0)
    values.append(encode_message(rack_frame(frame_seq=-1), 2))  # rejected (partition 1)
    partitions = [0, 0, 0, 1, 1, 1, 1, 0, 1]
    raw = batch_of(values, partitions)
    writer = HistoryWriter(con)
    stored = writer.write(to_store(decoder, raw))
    assert stored == StoredBatch(
        frames_stored=6,
        samples_stored=6 * GPUS_PER_FRAME,
        duplicates_dropped=1,
        dead_letters=2,
        by_partition={0: PartitionOutcomes(3, 0, 1), 1: PartitionOutcomes(3, 1, 1)},
    )
    assert count(con, "SELECT count(*) FROM rack_frames") == 6
    assert count(con, "SELECT count(*) FROM gpu_samples") == 6 * GPUS_PER_FRAME
    assert count(con, "SELECT count(DISTINCT (frame_seq, node, gpu)) FROM gpu_samples") == 6 * GPUS_PER_FRAME
    dead = con.execute(
        "SELECT kafka_partition, kafka_offset, reason, raw_value, message_key FROM dead_letters ORDER BY 1, 2"
    ).fetchall()
    assert [(p, o) for p, o, *_ in dead] == [(0, 3), (1, 4)]
    assert "unknown schema id 99" in dead[0][2]
    assert dead[0][3] == values[7]
    assert dead[0][4] == raw.keys[7]
    assert "negative frame_seq" in dead[1][2]
    # Partition 0: offsets 0..3 (3 stored + 1 dead); partition 1: offsets 0..4 (3 stored + 1 duplicate + 1 dead).
    assert offsets_table(con) == {0: (4, 4, 3, 0, 1), 1: (5, 5, 3, 1, 1)}
    assert writer.stored_offsets(TOPIC) == {0: 4, 1: 5}
    assert writer.stored_offsets("another-topic") == {}
    assert_counters_add_up(con)
    # The copy stored for seq 2 is the first by (partition, offset): partition 0, offset 2.
    row = con.execute(
        "SELECT kafka_partition, kafka_offset, bus_w, battery_soc, firmware, invalid_mask, ingested_at "
        "FROM rack_frames WHERE frame_seq = 2"
    ).fetchone()
    assert row is not None
    assert row[:6] == (0, 2, 12_000.0, 0.75, "fw-2.4.1", 0)
    assert row[6] is not None


def test_rewriting_the_same_frames_stores_nothing_new(con: duckdb.DuckDBPyConnection, decoder: FrameDecoder) -> None:
    writer = HistoryWriter(con)
    first = [encode_message(f, 2) for f in frames(range(10))]
    writer.write(to_store(decoder, batch_of(list(first), [0] * 10)))
    # A second ground station delivers the same pass again, later, on partition 1 and later offsets of 0.
    replay = batch_of(list(first), [0] * 5 + [1] * 5, offsets=[10, 11, 12, 13, 14, 0, 1, 2, 3, 4])
    stored = writer.write(to_store(decoder, replay))
    assert stored == StoredBatch(
        frames_stored=0,
        samples_stored=0,
        duplicates_dropped=10,
        dead_letters=0,
        by_partition={0: PartitionOutcomes(0, 5, 0), 1: PartitionOutcomes(0, 5, 0)},
    )
    assert count(con, "SELECT count(*) FROM rack_frames") == 10
    assert count(con, "SELECT count(*) FROM gpu_samples") == 10 * GPUS_PER_FRAME
    assert offsets_table(con) == {0: (15, 15, 10, 5, 0), 1: (5, 5, 0, 5, 0)}
    assert_counters_add_up(con)
    # The stored copies are the first ones.
    assert count(con, "SELECT count(*) FROM rack_frames WHERE kafka_partition = 0 AND kafka_offset < 10") == 10


def test_partially_new_batch_stores_only_new_frames_and_their_samples(
    con: duckdb.DuckDBPyConnection, decoder: FrameDecoder
) -> None:
    writer = HistoryWriter(con)
    writer.write(to_store(decoder, batch_of([encode_message(f, 2) for f in frames(range(4))], [0] * 4)))
    mixed = frames(range(2, 8), ground_station="second-station")
    stored = writer.write(
        to_store(decoder, batch_of([encode_message(f, 2) for f in mixed], [0] * 6, offsets=list(range(4, 10))))
    )
    assert stored == StoredBatch(
        frames_stored=4,
        samples_stored=4 * GPUS_PER_FRAME,
        duplicates_dropped=2,
        dead_letters=0,
        by_partition={0: PartitionOutcomes(4, 2, 0)},
    )
    assert count(con, "SELECT count(*) FROM rack_frames") == 8
    assert count(con, "SELECT count(*) FROM gpu_samples") == 8 * GPUS_PER_FRAME
    per_frame = con.execute("SELECT frame_seq, count(*) FROM gpu_samples GROUP BY 1 ORDER BY 1").fetchall()
    assert per_frame == [(s, GPUS_PER_FRAME) for s in range(8)]
    stations = dict(con.execute("SELECT frame_seq, ground_station FROM rack_frames").fetchall())
    assert stations == {**dict.fromkeys(range(4), "gs-svalbard"), **dict.fromkeys(range(4, 8), "second-station")}
    assert offsets_table(con) == {0: (10, 10, 8, 2, 0)}
    assert_counters_add_up(con)


def test_reboot_starts_a_new_identity(con: duckdb.DuckDBPyConnection, decoder: FrameDecoder) -> None:
    writer = HistoryWriter(con)
    values = [encode_message(f, 2) for f in [*frames(range(3)), *frames(range(3), boot_epoch=1)]]
    stored = writer.write(to_store(decoder, batch_of(list(values), [0] * 6)))
    assert stored.frames_stored == 6
    assert stored.duplicates_dropped == 0


def test_invalid_readings_are_stored_as_null_with_mask(con: duckdb.DuckDBPyConnection, decoder: FrameDecoder) -> None:
    frame = rack_frame(power={"bus_w": -1.0, "solar_w": 1.0, "battery_soc": 0.5, "in_eclipse": True})
    frame["gpus"][0]["temp_c"] = float("nan")
    HistoryWriter(con).write(to_store(decoder, batch_of([encode_message(frame, 2)], [0])))
    assert con.execute("SELECT bus_w, solar_w, invalid_mask FROM rack_frames").fetchall() == [(None, 1.0, 1)]
    rows = con.execute("SELECT temp_c, invalid_mask FROM gpu_samples WHERE node = 0 AND gpu = 0").fetchall()
    assert rows == [(None, 16)]
    assert count(con, "SELECT count(*) FROM gpu_samples WHERE invalid_mask <> 0") == 1


def test_failing_write_rolls_back_everything(con: duckdb.DuckDBPyConnection, decoder: FrameDecoder) -> None:
    writer = HistoryWriter(con)
    writer.write(to_store(decoder, batch_of([encode_message(f, 2) for f in frames(range(3))], [0] * 3)))
    before = offsets_table(con)
    values: list[bytes | None] = [encode_message(f, 2) for f in frames(range(3, 8))]
    values.append(None)
    good = to_store(decoder, batch_of(values, [0] * 6, offsets=list(range(3, 9))))
    broken = BatchToStore(
        topic=good.topic,
        rack_rows=good.rack_rows,
        gpu_rows=good.gpu_rows.drop("tenant"),
        dead_letters=good.dead_letters,
        progress=good.progress,
    )
    with pytest.raises(StorageError, match="rolled back"):
        writer.write(broken)
    assert count(con, "SELECT count(*) FROM rack_frames") == 3
    assert count(con, "SELECT count(*) FROM gpu_samples") == 3 * GPUS_PER_FRAME
    assert count(con, "SELECT count(*) FROM dead_letters") == 0
    assert offsets_table(con) == before == {0: (3, 3, 3, 0, 0)}
    assert writer.stored_offsets(TOPIC) == {0: 3}
    # The connection is usable afterwards and the same batch, intact, stores everything.
    stored = writer.write(good)
    assert stored == StoredBatch(
        frames_stored=5,
        samples_stored=5 * GPUS_PER_FRAME,
        duplicates_dropped=0,
        dead_letters=1,
        by_partition={0: PartitionOutcomes(5, 0, 1)},
    )
    assert offsets_table(con) == {0: (9, 9, 8, 0, 1)}
    assert_counters_add_up(con)


def test_failing_dead_letter_insert_rolls_back_frames(con: duckdb.DuckDBPyConnection, decoder: FrameDecoder) -> None:
    writer = HistoryWriter(con)
    good = to_store(decoder, batch_of([encode_message(frames([0])[0], 2), b"\x07bad"], [0, 0]))
    broken = BatchToStore(good.topic, good.rack_rows, good.gpu_rows, good.dead_letters.drop("reason"), good.progress)
    with pytest.raises(StorageError):
        writer.write(broken)
    assert count(con, "SELECT count(*) FROM rack_frames") == 0
    assert count(con, "SELECT count(*) FROM gpu_samples") == 0
    assert offsets_table(con) == {}


# ---------------------------------------------------------------------------------------------- locking

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
con.close()
"""


def test_second_process_gets_database_locked_error(db_path: Path) -> None:
    open_database(db_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLockedError, match="held by another process"):
            open_database(db_path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        assert holder.stdout is not None
        holder.stdout.close()
    # Once the holder is gone the file opens again.
    open_database(db_path).close()


def test_partition_claims_keep_the_first_offset_survive_a_reopen_and_can_be_forgotten(db_path: Path) -> None:
    con = open_database(db_path)
    writer = HistoryWriter(con)
    writer.record_claims("telemetry", {0: 40, 1: None})
    writer.record_claims("telemetry", {0: 900, 2: 7})  # a claim already made is kept
    writer.record_claims("other", {0: 1})
    assert writer.claims("telemetry") == {0: 40, 1: None, 2: 7}
    con.close()
    con = open_database(db_path)
    writer = HistoryWriter(con)
    assert writer.claims("telemetry") == {0: 40, 1: None, 2: 7}
    writer.forget_claims("telemetry", [1, 2])
    assert writer.claims("telemetry") == {0: 40}
    assert writer.claims("other") == {0: 1}
    con.close()
