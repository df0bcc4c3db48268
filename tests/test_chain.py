"""The batch chain (``orbitwatch.chain``, ``orbitwatch.steps``) on a real DuckDB file and writer thread:
offsets travel with each batch, reach the commit step only after DuckDB committed, and never for a batch
that was refused or failed to store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingest.codec import FrameDecoder, RawBatch
from orbitwatch.chain import Prepared, batch_chain
from orbitwatch.inflight import FinishedWrite, InFlightWrite
from orbitwatch.steps import CommitOffsets, Message, ProcessingStep, RunTask
from storage.database import open_database
from storage.errors import StorageError
from storage.writer import HistoryWriter
from tests.helpers.frames import encode_message, frames_batch, raw_batch, registry


class Recorder:
    """The end of a chain: what was committed to Kafka and reported, in order."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.events: list[tuple[str, dict[int, int]]] = []

    def commit(self, offsets: dict[int, int]) -> None:
        stored = dict(self.con.cursor().execute("SELECT kafka_partition, next_offset FROM kafka_offsets").fetchall())
        assert all(stored.get(p, -1) >= o for p, o in offsets.items()), (offsets, stored)  # DuckDB first
        self.events.append(("commit", offsets))

    def committed(self, message: Message[FinishedWrite]) -> None:
        self.events.append(("committed", dict(message.committable)))


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_database(tmp_path / "history.duckdb")
    yield connection
    connection.close()


def chain_on(con: duckdb.DuckDBPyConnection, recorder: Recorder, **options: Any) -> ProcessingStep[RawBatch]:
    """The daemon's chain over a real writer on ``con``, ending in ``recorder`` (``options``: ``batch_chain``'s)."""
    return batch_chain(
        FrameDecoder(registry()), lambda: None, InFlightWrite(HistoryWriter(con)), recorder.committed, **options
    )


def batches(count: int, per_batch: int) -> list[RawBatch]:
    """``count`` consecutive batches of one rack's frames on partition 0."""
    values: list[bytes | None] = [encode_message(f, 2) for f in frames_batch(count * per_batch)]
    return [raw_batch(values[i : i + per_batch], first_offset=i) for i in range(0, len(values), per_batch)]


def test_message_of_a_batch_reaches_past_the_last_offset_of_each_partition() -> None:
    raw = raw_batch([b"a", b"b", b"c", b"d"], partition=[0, 1, 0, 1], offsets=[7, 3, 8, 4])
    message = Message.of(raw, 1.5)
    assert (dict(message.committable), message.messages) == ({0: 9, 1: 5}, 4)
    replaced = message.replace("payload")
    assert (replaced.payload, replaced.committable, replaced.messages, replaced.polled_at) == (
        "payload",
        message.committable,
        4,
        1.5,
    )


def test_a_task_that_raises_hands_nothing_on() -> None:
    reached: list[Message[FinishedWrite]] = []

    def refuse(message: Message[str]) -> FinishedWrite:
        raise ValueError(f"refused {message.payload}")

    step = RunTask(refuse, CommitOffsets(None, reached.append))
    with pytest.raises(ValueError, match="refused x"):
        step.submit(Message("x", {0: 1}, 1, 0.0))
    assert reached == []


def test_each_batch_is_committed_after_duckdb_stored_it_and_when_the_next_arrives(
    con: duckdb.DuckDBPyConnection,
) -> None:
    recorder = Recorder(con)
    chain = chain_on(con, recorder, commit=recorder.commit)
    first, second = batches(2, 5)
    chain.submit(Message.of(first, 0.0))
    assert recorder.events == []  # batch 1 in flight: nothing committed yet
    chain.submit(Message.of(second, 0.0))
    assert recorder.events == [("commit", {0: 5}), ("committed", {0: 5})]
    chain.join()
    assert recorder.events[2:] == [("commit", {0: 10}), ("committed", {0: 10})]
    chain.close()
    assert con.execute("SELECT count(*) FROM rack_frames").fetchall() == [(10,)]


def test_a_refused_batch_stores_nothing_and_commits_nothing(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)

    def refuse(batch: Prepared) -> None:
        raise RuntimeError(f"refused {len(batch.raw)} messages")

    chain = chain_on(con, recorder, admit=refuse, commit=recorder.commit)
    with pytest.raises(RuntimeError, match="refused 5 messages"):
        chain.submit(Message.of(batches(1, 5)[0], 0.0))
    chain.join()
    chain.close()
    assert recorder.events == []
    assert con.execute("SELECT count(*) FROM rack_frames").fetchall() == [(0,)]


def test_a_failed_write_is_raised_and_its_offsets_never_committed(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    chain = chain_on(con, recorder)
    con.execute("BEGIN TRANSACTION")  # the writer cannot begin its own: its write fails
    chain.submit(Message.of(batches(1, 5)[0], 0.0))
    with pytest.raises(StorageError, match="cannot start a transaction"):
        chain.join()
    con.execute("ROLLBACK")
    chain.terminate()
    assert recorder.events == []


def test_replay_stores_no_offsets(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    chain = chain_on(con, recorder, moves_offsets=False)
    for raw in batches(2, 5):
        chain.submit(Message.of(raw, 0.0))
    chain.close()
    assert recorder.events == [("committed", {0: 5}), ("committed", {0: 10})]  # reported, not committed
    assert con.execute("SELECT count(*) FROM rack_frames").fetchall() == [(10,)]
    assert con.execute("SELECT count(*) FROM kafka_offsets").fetchall() == [(0,)]
