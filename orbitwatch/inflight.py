"""One batch write in flight on a worker thread, so that DuckDB stores batch N while batch N+1 is polled,
decoded and processed (measured 1.5x the throughput of doing both in turn on 2 cores). The derived tables'
recompute of batch N (pure polars) is handed back to the submitting thread, which runs it while the
worker inserts batch N's raw rows: it needs only what the worker read before inserting.

Decision: the hand-back stays, because it pays. Measured through Kafka with the whole transaction on the
worker instead (medians of 3, the two versions one after the other): ``tests.bench.throughput`` (40 racks)
523k samples/s with the hand-back against 432k and 449k without (two runs of the bench);
``tests.bench.fleet_shape`` 505k against 474k (40 racks), 448k against 422k (1,000 racks), 244k against 239k
(5,000 racks), 307k against 294k (late passes). Running the recompute on a thread of the writer's own
during the raw insert gained nothing (488k, 390k, 243k, 230k): three busy threads on two cores and the
broker, where the hand-back keeps two (the submitting thread computes instead of decoding meanwhile).

A write without derived tables (``processing.enabled = false``) hands nothing back, and the submitting
thread does not wait for it: it used to wait for the end of every such write (the hand-back's "nothing"
came only then), so the backbone did not pipeline at all (5,000 racks: 667k -> 842k samples/s).

At most one write is in flight. Its Kafka offsets are committed after it finished: by the daemon loop,
or, when partitions are about to be revoked, by the rebalance listener, so that the next owner of a
partition never re-reads a batch this daemon stored.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from storage.derived import DerivedRows
from storage.writer import BatchToStore, HistoryWriter, StoredBatch


@dataclass(frozen=True, slots=True)
class FinishedWrite:
    """A batch that DuckDB committed, with what it stored and the offsets it reached (its size and poll time
    travel with the chain's message, ``orbitwatch.steps.Message``)."""

    batch: BatchToStore
    stored: StoredBatch
    reached: Mapping[int, int]
    """The next offset per partition once this batch is stored (what its commit reaches)."""

    def next_offsets(self) -> dict[int, int]:
        """The offsets this batch reached, per partition."""
        return dict(self.reached)


class Handoff:
    """Hands one computation per write from the writer thread to the thread that called ``submit``.

    The writer posts its derived-tables recompute (pure polars) once it has read what it needs, then goes
    on inserting the raw rows; the submitting thread runs it meanwhile (``serve``). Each write posts
    exactly one message, the computation or None, so ``serve`` never waits for nothing.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], DerivedRows], Future[DerivedRows]] | None] = (
            queue.SimpleQueue()
        )
        self._posted = False

    def request(self, work: Callable[[], DerivedRows]) -> Future[DerivedRows]:
        """From the writer thread: have ``work`` run by the serving thread."""
        future: Future[DerivedRows] = Future()
        self._posted = True
        self._queue.put((work, future))
        return future

    def start(self) -> None:
        """From the writer thread, as a write starts."""
        self._posted = False

    def end(self) -> None:
        """From the writer thread, as a write ends: post None if it asked for nothing."""
        if not self._posted:
            self._queue.put(None)

    def serve(self) -> None:
        """From the submitting thread: run the current write's computation, if it asks for one."""
        message = self._queue.get()
        if message is None:
            return
        work, future = message
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to the writer, which rolls back
            future.set_exception(exc)


class InFlightWrite:
    """Runs ``HistoryWriter.write`` on one worker thread, one batch at a time."""

    def __init__(self, writer: HistoryWriter) -> None:
        self._writer = writer
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="duckdb-writer")
        self._lock = threading.Lock()
        self._future: Future[FinishedWrite] | None = None
        self._handoff = Handoff()

    def submit(self, batch: BatchToStore, reached: Mapping[int, int]) -> None:
        """Start storing ``batch``, then (with derived tables) run its recompute here while the raw rows
        are inserted; the previous write must have been taken with ``finish``."""
        with self._lock:
            if self._future is not None:
                raise RuntimeError("a write is already in flight; finish() it first")
            self._future = self._pool.submit(self._write, batch, reached)
        if self._writer.derived is not None:
            self._handoff.serve()

    def _write(self, batch: BatchToStore, reached: Mapping[int, int]) -> FinishedWrite:
        if self._writer.derived is None:  # nothing to hand back: the submitting thread does not wait
            return FinishedWrite(batch, self._writer.write(batch), reached)
        self._handoff.start()
        try:
            return FinishedWrite(batch, self._writer.write(batch, self._handoff.request), reached)
        finally:
            self._handoff.end()

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
