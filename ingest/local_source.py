"""An in-process stand-in for the Kafka source: a ``LocalBroker`` and ``LocalSource`` consumers over it.

It models what the daemon relies on of Kafka (the contract suite in ``tests/contract`` runs the same tests on
it and on a real broker): topics of partitions holding messages (topic, partition, offset, key, value,
timestamp) at consecutive offsets from 0; committed offsets per consumer group and topic, where a commit
stores the *next* offset to read; a consumer that resumes, on assignment, where ``ingest.resume`` decides
from the history's ``OffsetStore`` and the group's committed offsets (like ``KafkaSource``); polls bounded by
``max_records`` that wait at most ``timeout_ms`` for a message; and outages (``LocalBroker.reachable``): polls
return nothing, commits and end-offset probes fail and are reported to the ``BrokerState``.

Simplifications: one member per group and topic at a time (a second live member is an error, not a
rebalance); in a group, a consumer is assigned every partition of the topic at its first poll.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ingest.assignment import resume_assigned, start_offset, static_partitions, warn_rereads
from ingest.broker_state import BrokerState
from ingest.codec import RawBatch
from ingest.errors import SourceError
from ingest.settings import KafkaSettings
from ingest.source_protocol import NoHistory, OffsetStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalMessage:
    """One message as a partition holds it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class LocalCommit:
    """One offset commit the broker accepted: the next offsets of ``group`` on ``topic``."""

    group: str
    topic: str
    offsets: dict[int, int]


class LocalBroker:
    """Topics -> partitions -> messages, and committed offsets per (group, topic); thread-safe.

    ``reachable = False`` simulates an outage until set back; ``commits`` lists every accepted commit in order.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._logs: dict[str, list[list[LocalMessage]]] = {}
        self._committed: dict[tuple[str, str], dict[int, int]] = {}
        self._members: dict[tuple[str, str], LocalSource] = {}
        self._next_partition: dict[str, int] = {}
        self.reachable = True
        self.commits: list[LocalCommit] = []

    def create_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` with ``partitions`` empty partitions unless it exists (like ``ingest.admin``)."""
        if partitions < 1:
            raise ValueError("a topic needs at least one partition")
        with self._cond:
            self._logs.setdefault(topic, [[] for _ in range(partitions)])

    def partitions(self, topic: str) -> list[int]:
        """The partitions of ``topic`` (empty when it does not exist)."""
        with self._cond:
            return list(range(len(self._logs.get(topic, []))))

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> LocalMessage:
        """Append one message: to ``partition``, else by the key's hash, else round-robin; wakes pollers."""
        with self._cond:
            log_ = self._log(topic)
            if partition is None:
                if key is not None:
                    partition = zlib.crc32(key) % len(log_)
                else:
                    partition = self._next_partition.get(topic, 0) % len(log_)
                    self._next_partition[topic] = partition + 1
            if not 0 <= partition < len(log_):
                raise SourceError(f"topic {topic} has no partition {partition}")
            stamp = timestamp_ms if timestamp_ms is not None else int(self._clock() * 1000)
            message = LocalMessage(topic, partition, len(log_[partition]), key, value, stamp)
            log_[partition].append(message)
            self._cond.notify_all()
        return message

    def messages(self, topic: str, partition: int) -> list[LocalMessage]:
        """Every message of one partition, in offset order."""
        with self._cond:
            return list(self._log(topic)[partition])

    def end_offsets(self, topic: str) -> dict[int, int]:
        """The offset the next message of each partition gets."""
        with self._cond:
            return {p: len(messages) for p, messages in enumerate(self._log(topic))}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The next offsets ``group`` committed on ``topic`` (partitions never committed are absent)."""
        with self._cond:
            return dict(self._committed.get((group, topic), {}))

    def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        """Store ``offsets`` as the group's next offsets; ``SourceError`` during an outage."""
        with self._cond:
            if not self.reachable:
                raise SourceError("the local broker is unreachable (simulated outage)")
            self._committed.setdefault((group, topic), {}).update(offsets)
            self.commits.append(LocalCommit(group, topic, dict(offsets)))

    def consumer(self, settings: KafkaSettings, store: OffsetStore, state: BrokerState | None = None) -> LocalSource:
        """A ``LocalSource`` on this broker (a ``SourceFactory``: ``Daemon(settings, source=broker.consumer)``)."""
        return LocalSource(self, settings, store, state)

    def fetch(self, topic: str, partition: int, offset: int, limit: int) -> list[LocalMessage]:
        """Up to ``limit`` messages of one partition from ``offset`` (nothing during an outage)."""
        with self._cond:
            if not self.reachable:
                return []
            return self._log(topic)[partition][offset : offset + limit]

    def wait(self, timeout_s: float) -> None:
        """Block until a message is produced or ``timeout_s`` passed."""
        with self._cond:
            self._cond.wait(timeout_s)

    def join(self, group: str, topic: str, member: LocalSource) -> None:
        """Make ``member`` the group's one consumer of ``topic``."""
        with self._cond:
            current = self._members.get((group, topic))
            if current is not None and current is not member:
                raise SourceError(f"group {group} already has a consumer of {topic} (LocalBroker: one per group)")
            self._members[(group, topic)] = member

    def leave(self, group: str, topic: str, member: LocalSource) -> None:
        """``member`` leaves the group."""
        with self._cond:
            if self._members.get((group, topic)) is member:
                del self._members[(group, topic)]

    def _log(self, topic: str) -> list[list[LocalMessage]]:
        try:
            return self._logs[topic]
        except KeyError:
            raise SourceError(f"topic {topic} does not exist on the local broker") from None


class LocalSource:
    """One consumer of a ``LocalBroker`` topic, in a group or on static partitions (a ``Source``)."""

    def __init__(
        self,
        broker: LocalBroker,
        settings: KafkaSettings,
        store: OffsetStore | None = None,
        state: BrokerState | None = None,
    ) -> None:
        self.store: OffsetStore = store if store is not None else NoHistory()
        self.state = state if state is not None else BrokerState(settings.bootstrap_servers)
        self.topic = settings.topic
        self.group = settings.group_id
        self.closing = False
        self._broker = broker
        self._auto_offset_reset = settings.auto_offset_reset
        self._positions: dict[int, int] = {}  # assigned partition -> next offset to return
        self._uncommitted: dict[int, int] = {}  # next offsets whose commit failed, carried to the next one
        self._rotate = 0
        self._closed = False
        partitions = static_partitions(settings, lambda: self._broker.partitions(self.topic))
        self._grouped = partitions is None
        if partitions is not None:
            self._assign(partitions)

    def _join(self) -> None:
        """In a group: take every partition of the topic once it exists (Kafka's join, done at a poll)."""
        if self._positions or not (partitions := self._broker.partitions(self.topic)):
            return
        self._broker.join(self.group, self.topic, self)
        self._assign(partitions)

    def _assign(self, partitions: list[int]) -> None:
        """Position each partition where ``ingest.resume.resume_position`` says, as ``KafkaSource`` does."""
        committed = self._broker.committed(self.group, self.topic)
        group_offsets = {p: committed.get(p) for p in partitions}
        ends = self._broker.end_offsets(self.topic) if self._broker.partitions(self.topic) else {}
        decided, _ = resume_assigned(self.store, group_offsets, grouped=self._grouped)
        for resume in decided:
            p = resume.partition
            start = start_offset(resume, group_offsets[p], self._auto_offset_reset)
            reset = 0 if self._auto_offset_reset == "earliest" else ends.get(p, 0)
            self._positions[p] = start if start is not None else reset
        log.info("partitions assigned: %s (resuming at %s)", sorted(partitions), dict(sorted(self._positions.items())))
        warn_rereads(decided, self._auto_offset_reset)

    def poll(self, timeout_ms: int, max_records: int, top_up_ms: int | None = 50) -> RawBatch:
        """Up to ``max_records`` messages as a column batch, waiting at most ``timeout_ms`` for the first;
        partitions take turns being read first. ``top_up_ms`` is accepted for parity (one fetch fills it)."""
        if self._closed:
            raise SourceError("poll on a closed consumer")
        batch = RawBatch(self.topic)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self._grouped:
                self._join()
            self._fetch_into(batch, max_records)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0:
                break
            self._broker.wait(min(remaining, 0.05))  # short waits: an outage's end needs no produce
        if batch:
            self.state.succeeded()
        return batch

    def _fetch_into(self, batch: RawBatch, max_records: int) -> None:
        order = sorted(self._positions)
        if not order:
            return
        self._rotate = (self._rotate + 1) % len(order)
        for p in order[self._rotate :] + order[: self._rotate]:
            if len(batch) >= max_records:
                break
            for m in self._broker.fetch(self.topic, p, self._positions[p], max_records - len(batch)):
                batch.append(m.partition, m.offset, m.timestamp_ms, m.key, m.value)
                self._positions[p] = m.offset + 1

    def commit(self, next_offsets: dict[int, int]) -> None:
        """Commit the next offsets a stored batch reached, for partitions still owned; offsets whose commit
        failed are carried to the next call (none is tried while the broker is known to be away)."""
        self._uncommitted.update(next_offsets)
        if not self.state.reachable:
            return
        offsets = {p: o for p, o in self._uncommitted.items() if p in self._positions}
        self._uncommitted = {}
        if not offsets:
            return
        try:
            self._broker.commit(self.group, self.topic, offsets)
        except SourceError as exc:
            self._uncommitted = offsets
            if self.state.reachable:
                log.warning("Kafka offset commit failed (DuckDB holds the truth, retried): %s", exc)
            self.state.failed("offset commit", exc)
            return
        self.state.succeeded()

    def retry_commit(self) -> None:
        """Commit offsets an earlier commit could not (nothing when there are none)."""
        if self._uncommitted:
            self.commit({})

    def assigned_partitions(self) -> list[int]:
        """Partitions this consumer currently reads."""
        return sorted(self._positions)

    def lag(self) -> dict[int, int]:
        """Messages behind the end offset per assigned partition (also probes the broker: an outage is
        reported to the ``BrokerState`` and answers nothing)."""
        if not self._positions:
            return {}
        if not self._broker.reachable:
            self.state.failed("end offsets", SourceError("the local broker is unreachable (simulated outage)"))
            return {}
        ends = self._broker.end_offsets(self.topic)
        self.state.succeeded()
        return {p: max(0, ends[p] - position) for p, position in self._positions.items()}

    def close(self) -> None:
        """Leave the group: commit the carried offsets and those of the write in flight first (no handover
        is recorded, as on ``KafkaSource.close``); then no more polls."""
        if self._closed:
            return
        self.closing = True
        if self._grouped and self._positions:
            partitions = sorted(self._positions)
            carried = {p: self._uncommitted.pop(p) for p in partitions if p in self._uncommitted}
            offsets = {**carried, **self.store.before_revoke()}
            if offsets:
                try:
                    self._broker.commit(self.group, self.topic, offsets)
                except SourceError as exc:
                    log.warning("offset commit on leaving the group failed (DuckDB holds the truth): %s", exc)
            log.info("partitions revoked: %s (committed %s)", partitions, offsets)
            self._broker.leave(self.group, self.topic, self)
        self._positions = {}
        self._closed = True
