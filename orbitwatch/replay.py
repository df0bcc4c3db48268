"""``orbitwatch replay``: re-read a time range from Kafka into the history, idempotently.

The daemon's chain (``orbitwatch.chain``) with a range source and no Kafka commit: a consumer without a
group, no dead-letter guard. It is idempotent:
frames already stored are dropped by the frame key, dead letters by their coordinates. It does not move
the daemon's stored offsets or counters (``kafka_offsets``), so the live daemon's accounting stays its
own. The derived tables (rollups, gaps, health) of the minutes it fills are recomputed as for late
frames. DuckDB allows one process per file: stop the shard's daemon first (the error says so otherwise).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ingest.codec import FrameDecoder
from ingest.range_reader import RangeReader
from ingest.registry import SchemaRegistry
from orbitwatch.chain import Prepared, batch_chain
from orbitwatch.daemon_parts import derived_tables
from orbitwatch.inflight import FinishedWrite, InFlightWrite
from orbitwatch.settings import Settings
from orbitwatch.steps import Message
from storage.database import open_database
from storage.retention import raw_archived_before
from storage.writer import HistoryWriter


@dataclass(slots=True)
class ReplayResult:
    """What a replay read and stored."""

    scanned: int = 0
    in_range: int = 0
    frames_stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0


def replay(
    settings: Settings,
    start: datetime,
    end: datetime,
    *,
    seek_by_time: bool = False,
    idle_s: float = 5.0,
    progress: Callable[[ReplayResult], None] | None = None,
) -> ReplayResult:
    """Store the messages with Kafka timestamps in ``[start, end)`` that the history lacks."""
    con = open_database(settings.storage.path, memory_limit=settings.storage.memory_limit)
    reader = RangeReader(settings.kafka, start, end, seek_by_time=seek_by_time)
    decoder = FrameDecoder(SchemaRegistry(settings.registry.contract_dir, settings.registry.url))
    writer, result = HistoryWriter(con, derived_tables(con, settings)), ReplayResult()
    archived_before = raw_archived_before(con)  # frames of archived days: stored, outside the derived tables

    in_batch_duplicates: deque[int] = deque()  # per batch in flight, in order; counted once it is stored

    def admit(batch: Prepared) -> None:
        # without progress the writer only counts copies already stored; add those dropped in the batch
        in_batch_duplicates.append(sum(batch.prepared.duplicates_by_partition.values()))

    def committed(message: Message[FinishedWrite]) -> None:
        stored = message.payload.stored
        result.in_range += message.messages
        result.frames_stored += stored.frames_stored
        result.duplicates += stored.duplicates_dropped + in_batch_duplicates.popleft()
        result.dead_letters += stored.dead_letters
        if progress is not None:
            progress(result)

    in_flight = InFlightWrite(writer)
    chain = batch_chain(decoder, lambda: archived_before, in_flight, committed, admit=admit, moves_offsets=False)
    last_read = time.monotonic()
    try:
        while not reader.finished and time.monotonic() - last_read < idle_s:
            scanned_before = reader.scanned
            polled_at = time.perf_counter()
            raw = reader.poll(settings.daemon.poll_timeout_ms, settings.daemon.max_batch_messages)
            result.scanned = reader.scanned
            if reader.scanned > scanned_before:
                last_read = time.monotonic()
            if raw:
                chain.submit(Message.of(raw, polled_at))
            else:
                chain.poll()
        chain.close()  # the write in flight, then the writer thread
        writer.flush_held()  # the open minutes, so the windows hold every replayed frame
    finally:
        chain.terminate()  # a no-op after close; after a failure, waits for the write in flight
        reader.close()
        con.close()
    return result
