"""The batch flow, wired in one place; the daemon and replay run the same chain.

    source            the daemon's Kafka consumer, or replay's range reader (polled by the loop that submits)
    -> decode         bytes to typed frames; malformed messages become dead letters (``ingest.codec``)
    -> prepare        impossible frames rejected, duplicates dropped, rows and dead letters assembled
    -> admit          the dead-letter guard: past its limit the batch is not stored and the daemon stops
    -> store          one DuckDB transaction on the writer thread: raw rows, dead letters, offsets, and in
                      it derive (``processing``: windows, health, usage, gaps) and alerts (outbox rows)
    -> commit offsets to Kafka, only after DuckDB committed (replay commits none)

The steps follow ``orbitwatch.steps`` (arroyo's contract). Everything up to ``admit`` runs on the thread
that polls; ``store`` returns once the writer has read what the batch's recompute needs and the polling
thread has run that recompute (pure polars, handed back: ``orbitwatch.inflight``) while the raw rows were
inserted. DuckDB then finishes storing batch N while batch N+1 is polled and decoded.

**Decision: derive and alerts run inside the store's transaction, not as steps ahead of it.** Deriving a
batch reads the windows, tips and per-rack state that the batch before it wrote; ahead of ``store`` it would
have to wait for that write, and the pipelining would be gone. In the transaction, the derive step is
``storage.derived`` reading and replacing rows around ``processing``'s pure polars functions, and the
alert step is ``alerting.tables.AlertTables`` behind ``storage.transaction_step.TransactionStep`` (storage
imports nothing of alerting). One transaction stores a batch's raw rows, derived rows, outbox rows and
offsets, or none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ingest.codec import DecodedBatch, FrameDecoder, RawBatch
from orbitwatch.assemble import to_store
from orbitwatch.inflight import FinishedWrite, InFlightWrite
from orbitwatch.steps import CommitOffsets, Message, ProcessingStep, RunTask, StoreBatches
from processing.rows import PreparedBatch, prepare_batch
from storage.writer import BatchToStore


@dataclass(frozen=True, slots=True)
class Decoded:
    """A polled batch and what its bytes decoded to."""

    raw: RawBatch
    decoded: DecodedBatch


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch ready to store (``batch``), with the polled messages and the prepared frames it came from."""

    raw: RawBatch
    prepared: PreparedBatch
    batch: BatchToStore


def batch_chain(
    decoder: FrameDecoder,
    archived_before: Callable[[], datetime | None],
    in_flight: InFlightWrite,
    committed: Callable[[Message[FinishedWrite]], None],
    *,
    admit: Callable[[Prepared], None] | None = None,
    commit: Callable[[dict[int, int]], None] | None = None,
    moves_offsets: bool = True,
) -> ProcessingStep[RawBatch]:
    """The chain a polled batch is submitted to.

    ``archived_before()``: frames sampled before it belong to days archived or due (stored, outside the
    derived tables). ``admit``: raises to refuse a batch before anything of it is stored (the dead-letter
    guard). ``commit``: commits offsets to Kafka (None: replay). ``committed``: told of every batch once
    stored and committed. ``moves_offsets=False`` stores no ``kafka_offsets`` progress (replay leaves the
    daemon's accounting alone).
    """

    def decode(message: Message[RawBatch]) -> Decoded:
        return Decoded(message.payload, decoder.decode(message.payload))

    def prepare(message: Message[Decoded]) -> Prepared:
        raw, decoded = message.payload.raw, message.payload.decoded
        prepared = prepare_batch(decoded.frames)
        batch = to_store(raw, decoded, prepared, archived_before())
        if not moves_offsets:
            batch.progress = {}
        return Prepared(raw, prepared, batch)

    def admitted(message: Message[Prepared]) -> BatchToStore:
        if admit is not None:
            admit(message.payload)
        return message.payload.batch

    # read left to right: decode -> prepare -> admit -> store -> commit offsets
    return RunTask(
        decode, RunTask(prepare, RunTask(admitted, StoreBatches(in_flight, CommitOffsets(commit, committed))))
    )
