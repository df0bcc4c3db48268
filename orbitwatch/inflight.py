"""One batch write in flight on a worker thread, so that DuckDB stores batch N while batch N+1 is polled,
decoded and processed (measured 1.5x the throughput of doing both in turn on 2 cores). The whole
transaction, the derived tables' recompute included, runs on the worker.

Decision: the recompute is no longer handed back to the submitting thread to overlap the raw insert. In
process, over the fleet shapes of ``tests.bench.fleet_shape`` (medians of 3, side by side), the hand-back
was worth 1-3% (5,000 racks: 5.40 s with it, 5.52 s without; 1,000 racks with late passes: 5.05 s
against 5.18 s; 1,000 racks in order: 4.12 s against 4.15 s). Through Kafka (``tests.bench.fleet_shape``,
medians of 3, the two versions one after the other) 2-6%: 40 racks 505k against 474k samples/s, 1,000
racks 448k against 422k, 5,000 racks 244k against 239k, late passes 307k against 294k; the same code
measures 5-10% apart from one bench run to the next on this machine. Running the recompute on a thread
of the writer's own during the raw insert instead gained nothing (488k, 390k, 243k, 230k: three busy
threads on two cores and the broker). A few percent did not pay for a batch whose life crossed three
threads through a hand-back protocol. (It also kept the backbone
from pipelining at all: the polling thread waited for the hand-back's signal, which a write without
derived tables gave only at its end. The backbone went from 667k to 842k samples/s over 5,000 racks.)

At most one write is in flight. Its Kafka offsets are committed after it finished: by the daemon loop,
or, when partitions are about to be revoked, by the rebalance listener, so that the next owner of a
partition never re-reads a batch this daemon stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from storage.writer import BatchToStore, HistoryWriter, StoredBatch


@dataclass(frozen=True, slots=True)
class FinishedWrite:
    """A batch that DuckDB committed, with what it stored, the offsets it reached and when its poll started."""

    batch: BatchToStore
    stored: StoredBatch
    messages: int
    polled_at: float
    reached: Mapping[int, int]
    """The next offset per partition once this batch is stored (what its commit reaches)."""

    def next_offsets(self) -> dict[int, int]:
        """The offsets this batch reached, per partition."""
        return dict(self.reached)


class InFlightWrite:
    """Runs ``HistoryWriter.write`` on one worker thread, one batch at a time."""

    def __init__(self, writer: HistoryWriter) -> None:
        self._writer = writer
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="duckdb-writer")
        self._lock = threading.Lock()
        self._future: Future[FinishedWrite] | None = None

    def submit(self, batch: BatchToStore, messages: int, polled_at: float, reached: Mapping[int, int]) -> None:
        """Start storing ``batch`` and return; the previous write must have been taken with ``finish``."""
        with self._lock:
            if self._future is not None:
                raise RuntimeError("a write is already in flight; finish() it first")
            self._future = self._pool.submit(self._write, batch, messages, polled_at, reached)

    def _write(self, batch: BatchToStore, messages: int, polled_at: float, reached: Mapping[int, int]) -> FinishedWrite:
        return FinishedWrite(batch, self._writer.write(batch), messages, polled_at, reached)

    @property
    def busy(self) -> bool:
        """True while a write is in flight (not yet taken with ``finish``)."""
        with self._lock:
            return self._future is not None

    @property
    def done(self) -> bool:
        """True when a write is in flight and has finished (``finish`` takes it without waiting)."""
        with self._lock:
            return self._future is not None and self._future.done()

    def finish(self) -> FinishedWrite | None:
        """Wait for the write in flight (re-raising its error) and take it; None when there is none."""
        with self._lock:
            future, self._future = self._future, None
        return future.result() if future is not None else None

    def wait(self) -> dict[int, int]:
        """Wait for the write in flight without taking it; the offsets it reached (empty if none)."""
        with self._lock:
            future = self._future
        if future is None:
            return {}
        return future.result().next_offsets()

    def close(self) -> None:
        """Stop the worker thread (after the write in flight)."""
        self._pool.shutdown(wait=True)


def seconds_since(started: float) -> float:
    """Seconds since a ``time.perf_counter()`` value."""
    return time.perf_counter() - started
