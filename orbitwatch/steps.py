"""The step contract of the batch flow, after arroyo's ``ProcessingStrategy``, and the steps it is made of.

Every step has the same five methods: ``submit`` takes a message from the step before, ``poll`` lets a
step with work in the background hand on what finished (without waiting), ``join`` waits until everything
submitted has been handed on, ``close`` and ``terminate`` stop it (after its work, or at once). Each step
holds the next one and hands on ``message.replace(payload)``: a message keeps the offsets it may commit
however its payload changes, so whatever reaches the last step can be committed.

A message here is one batch (polled together, stored in one transaction), not one Kafka record.
``orbitwatch.chain`` wires the steps into the daemon's chain and replay's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ingest.codec import RawBatch
from orbitwatch.inflight import FinishedWrite, InFlightWrite
from storage.writer import BatchToStore

T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Message(Generic[T_co]):
    """One batch on its way down the chain: its payload, the offsets it reaches, its size, when it was polled."""

    payload: T_co
    committable: Mapping[int, int]
    """The next offset to read per partition once this batch is stored."""
    messages: int
    """Kafka messages in the batch."""
    polled_at: float
    """``time.perf_counter()`` when its poll started."""

    @classmethod
    def of(cls, raw: RawBatch, polled_at: float) -> Message[RawBatch]:
        """The message of a polled batch: the offsets past the last of each partition."""
        return Message(raw, raw.next_offsets(), len(raw), polled_at)

    def replace(self, payload: U) -> Message[U]:
        """The same batch with another payload (its offsets, size and poll time kept)."""
        return Message(payload, self.committable, self.messages, self.polled_at)


class ProcessingStep(Protocol[T_contra]):
    """One step of the batch flow (arroyo's ``ProcessingStrategy``)."""

    def submit(self, message: Message[T_contra]) -> None:
        """Take one batch; hand it (or what it became) on to the next step, now or later."""
        ...

    def poll(self) -> None:
        """Hand on work that finished in the background, without waiting for any."""
        ...

    def join(self) -> None:
        """Wait until everything submitted has been handed on (and the next steps joined).

        Unlike arroyo's, it takes no timeout: what it waits for is a DuckDB transaction, which is not
        abandoned half-way.
        """
        ...

    def close(self) -> None:
        """Stop after the work in hand; nothing may be submitted after it."""
        ...

    def terminate(self) -> None:
        """Stop without handing on the work in hand (on a failure, or when closing the daemon): its
        offsets do not reach the next steps."""
        ...


class RunTask(Generic[T, U]):
    """Runs ``function`` on each batch, in the submitting thread, and hands on its result.

    An exception propagates out of ``submit``: nothing of the batch reaches the steps after it.
    """

    def __init__(self, function: Callable[[Message[T]], U], next_step: ProcessingStep[U]) -> None:
        self._function = function
        self._next = next_step

    def submit(self, message: Message[T]) -> None:
        """Hand on ``function(message)`` with the batch's offsets."""
        self._next.submit(message.replace(self._function(message)))

    def poll(self) -> None:
        """Nothing of its own runs in the background."""
        self._next.poll()

    def join(self) -> None:
        """Nothing of its own is pending."""
        self._next.join()

    def close(self) -> None:
        """Close the steps after it."""
        self._next.close()

    def terminate(self) -> None:
        """Terminate the steps after it."""
        self._next.terminate()


class StoreBatches:
    """Stores each batch in one DuckDB transaction on the writer thread (``InFlightWrite``), one at a time.

    ``submit`` first waits for the write in flight and hands it on, then starts the new one and returns
    (after running its handed-back recompute, with derived tables): DuckDB finishes storing batch N while
    the submitting thread polls and decodes batch N+1. A failed write re-raises (``StorageError``) from
    the ``submit``, ``poll`` or ``join`` that takes it; nothing of it is handed on, so its offsets are
    never committed.
    """

    def __init__(self, in_flight: InFlightWrite, next_step: ProcessingStep[FinishedWrite]) -> None:
        self._in_flight = in_flight
        self._next = next_step
        self._message: Message[BatchToStore] | None = None

    def submit(self, message: Message[BatchToStore]) -> None:
        """Hand on the write in flight once DuckDB committed it, then start storing ``message``."""
        self._hand_on()
        self._in_flight.submit(message.payload, message.committable)
        self._message = message

    def poll(self) -> None:
        """Hand on the write in flight if it has finished."""
        if self._in_flight.done:
            self._hand_on()
        self._next.poll()

    def join(self) -> None:
        """Wait for the write in flight and hand it on."""
        self._hand_on()
        self._next.join()

    def close(self) -> None:
        """Finish the write in flight (handing it on) and stop the writer thread."""
        try:
            self._hand_on()
        finally:
            self._in_flight.close()
        self._next.close()

    def terminate(self) -> None:
        """Stop the writer thread after the write in flight, without handing it on: the chain commits none
        of its offsets (DuckDB holds them if it committed; the daemon's rebalance listener commits them to
        Kafka as the consumer leaves its group, and a restart resumes from DuckDB's either way)."""
        self._message = None
        self._in_flight.close()
        self._next.terminate()

    def _hand_on(self) -> None:
        message, self._message = self._message, None
        finished = self._in_flight.finish()
        if message is not None and finished is not None:
            self._next.submit(message.replace(finished))


class CommitOffsets:
    """The last step: commits each stored batch's offsets (``commit``), then tells ``committed``.

    Offsets are committed only here, after DuckDB committed the batch's rows and offsets together.
    Replay passes no ``commit``: it never moves the consumer group's offsets.
    """

    def __init__(
        self,
        commit: Callable[[dict[int, int]], None] | None,
        committed: Callable[[Message[FinishedWrite]], None],
    ) -> None:
        self._commit = commit
        self._committed = committed

    def submit(self, message: Message[FinishedWrite]) -> None:
        """Commit the batch's offsets, then report it."""
        if self._commit is not None:
            self._commit(dict(message.committable))
        self._committed(message)

    def poll(self) -> None:
        """Commits happen in ``submit``."""

    def join(self) -> None:
        """Commits happen in ``submit``."""

    def close(self) -> None:
        """Nothing to release."""

    def terminate(self) -> None:
        """Nothing to release."""
