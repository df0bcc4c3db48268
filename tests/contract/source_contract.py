"""What the daemon relies on of its source, as one suite (``SourceContract``) that every backend runs.

A backend subclasses ``SourceContract`` (arroyo's ``tests/backends/mixins.py`` pattern) and says how to make
a topic, produce to one partition, build a consumer and read a group's committed offsets:
``test_local_source.py`` runs it on ``ingest.local_source``, ``test_kafka_source.py`` on
``ingest.source.KafkaSource`` and a real broker.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from ingest.codec import RawBatch
from ingest.settings import KafkaSettings
from ingest.source_protocol import NoHistory, OffsetStore, Source

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
Message = tuple[int, int, bytes | None, bytes | None, int]
"""(partition, offset, key, value, timestamp_ms) of one polled message."""


@dataclass
class MemoryHistory:
    """An ``OffsetStore`` in memory: the offsets, handovers and claims a history would hold in DuckDB."""

    offsets: dict[int, int] = field(default_factory=dict)
    handed_over: dict[int, int] = field(default_factory=dict)
    claimed: dict[int, int | None] = field(default_factory=dict)
    in_flight: dict[int, int] = field(default_factory=dict)
    """What ``before_revoke`` answers: the next offsets of a write in flight when partitions go."""

    def stored(self) -> dict[int, int]:
        """Next offset per partition."""
        return dict(self.offsets)

    def handovers(self) -> dict[int, int]:
        """Partitions handed over in a rebalance."""
        return dict(self.handed_over)

    def record_handovers(self, offsets: dict[int, int]) -> None:
        """Remember handovers."""
        self.handed_over.update(offsets)

    def forget_handovers(self, partitions: list[int]) -> None:
        """Forget handovers."""
        for p in partitions:
            self.handed_over.pop(p, None)

    def claims(self) -> dict[int, int | None]:
        """Partitions claimed, at their first offsets."""
        return dict(self.claimed)

    def record_claims(self, first_offsets: dict[int, int | None]) -> None:
        """Remember new claims (an existing one is kept)."""
        for p, o in first_offsets.items():
            self.claimed.setdefault(p, o)

    def forget_claims(self, partitions: list[int]) -> None:
        """Forget claims."""
        for p in partitions:
            self.claimed.pop(p, None)

    def before_revoke(self) -> dict[int, int]:
        """The write in flight's next offsets."""
        return dict(self.in_flight)


def messages(batch: RawBatch) -> list[Message]:
    """The rows of a batch."""
    return list(
        zip(batch.partitions, batch.offsets, batch.keys, batch.values, batch.timestamps_ms, strict=True),
    )


def value(partition: int, index: int) -> bytes:
    """The value of the ``index``-th message the suite produces to ``partition``."""
    return f"p{partition}-m{index}".encode()


class SourceContract(ABC):
    """The guarantees of a source; subclasses name the backend (and are the collected test classes)."""

    poll_slack_s = 0.5
    """How much longer than its timeout an empty poll may take."""
    join_s = 30.0
    """How long a consumer may take to be assigned partitions and get the messages produced."""
    exact_end_offsets = True
    """Whether the broker reports end offsets exactly (Tansu answers ListOffsets wrongly, like
    ``offsets_for_times``: the lag is then only checked to be reported, and not negative)."""

    @abstractmethod
    def bootstrap_servers(self) -> str:
        """The servers a consumer's settings name."""

    @abstractmethod
    def new_topic(self, partitions: int) -> str:
        """A fresh, empty topic."""

    @abstractmethod
    def produce(self, topic: str, partition: int, count: int, start: int = 0) -> None:
        """Send ``count`` messages to ``partition``: key ``k<partition>``, ``value(partition, i)`` and
        timestamp ``BASE_MS + i`` for i from ``start``; returns once the broker holds them."""

    @abstractmethod
    def build(self, settings: KafkaSettings, store: OffsetStore) -> Source:
        """A consumer of this backend."""

    @abstractmethod
    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed next offsets on ``topic``, read from the broker (not from a consumer)."""

    @pytest.fixture(autouse=True)
    def _close_sources(self) -> Iterator[None]:
        self._sources: list[Source] = []
        yield
        for source in self._sources:
            source.close()

    # --- helpers ------------------------------------------------------------------------------------------

    def consumer(
        self,
        topic: str,
        group: str | None = None,
        store: OffsetStore | None = None,
        *,
        static_partitions: list[int] | None = None,
    ) -> Source:
        """A consumer on ``topic`` (closed at the end of the test unless closed before)."""
        settings = KafkaSettings(
            bootstrap_servers=self.bootstrap_servers(),
            topic=topic,
            group_id=group or f"group-{uuid.uuid4().hex[:8]}",
            static_partitions=static_partitions,
            session_timeout_ms=4_000,
            heartbeat_interval_ms=1_000,
        )
        source = self.build(settings, store if store is not None else NoHistory())
        self._sources.append(source)
        return source

    def close(self, source: Source) -> None:
        """Close ``source`` now (leaving its group)."""
        self._sources.remove(source)
        source.close()

    def drain(self, source: Source, count: int, max_records: int = 500) -> list[Message]:
        """Poll until ``count`` messages came (or ``join_s`` passed), then once more to see nothing else."""
        got: list[Message] = []
        deadline = time.monotonic() + self.join_s
        while len(got) < count and time.monotonic() < deadline:
            batch = source.poll(200, max_records, None)
            assert len(batch) <= max_records
            got += messages(batch)
        got += messages(source.poll(300, max_records, None))
        return got

    # --- the contract -------------------------------------------------------------------------------------

    def test_every_message_is_polled_once_in_offset_order_per_partition(self) -> None:
        topic = self.new_topic(3)
        for p, n in enumerate([5, 0, 7]):
            self.produce(topic, p, n)
        got = self.drain(self.consumer(topic), 12)
        for p, n in enumerate([5, 0, 7]):
            assert [m for m in got if m[0] == p] == [
                (p, i, f"k{p}".encode(), value(p, i), BASE_MS + i) for i in range(n)
            ]
        assert len(got) == 12

    def test_a_poll_returns_at_most_max_records(self) -> None:
        topic = self.new_topic(2)
        self.produce(topic, 0, 10)
        self.produce(topic, 1, 10)
        got = self.drain(self.consumer(topic), 20, max_records=3)
        assert sorted((p, o) for p, o, *_ in got) == [(p, o) for p in (0, 1) for o in range(10)]

    def test_a_poll_on_an_empty_topic_returns_nothing_within_its_timeout(self) -> None:
        topic = self.new_topic(2)
        source = self.consumer(topic, static_partitions=[0, 1])
        for _ in range(3):
            started = time.monotonic()
            assert len(source.poll(200, 100, None)) == 0
            assert time.monotonic() - started < 0.2 + self.poll_slack_s
        grouped = self.consumer(topic)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert len(grouped.poll(200, 100, None)) == 0

    def test_a_commit_stores_the_next_offset_per_partition_for_the_group(self) -> None:
        topic, group = self.new_topic(3), "g-commit"
        for p in range(3):
            self.produce(topic, p, 4)
        source = self.consumer(topic, group)
        assert len(self.drain(source, 12)) == 12
        assert source.assigned_partitions() == [0, 1, 2]
        source.commit({0: 4, 2: 1})
        assert self.committed(group, topic) == {0: 4, 2: 1}
        source.commit({2: 3})
        assert self.committed(group, topic) == {0: 4, 2: 3}
        assert self.committed("another-group", topic) == {}

    def test_a_new_consumer_of_the_group_resumes_at_the_committed_offset(self) -> None:
        topic, group = self.new_topic(2), "g-resume"
        self.produce(topic, 0, 10)
        self.produce(topic, 1, 3)
        first = self.consumer(topic, group)
        assert len(self.drain(first, 13)) == 13
        first.commit({0: 6, 1: 3})
        self.close(first)
        got = self.drain(self.consumer(topic, group), 4)
        assert [(p, o) for p, o, *_ in got] == [(0, o) for o in range(6, 10)]

    def test_uncommitted_messages_are_delivered_again_after_a_restart(self) -> None:
        topic, group = self.new_topic(2), "g-redeliver"
        self.produce(topic, 0, 5)
        self.produce(topic, 1, 5)
        first = self.consumer(topic, group)
        assert len(self.drain(first, 10)) == 10
        first.commit({0: 2})  # partition 1: nothing committed
        self.close(first)
        second = self.consumer(topic, group)
        got = self.drain(second, 8)
        assert sorted((p, o) for p, o, *_ in got) == [(0, o) for o in range(2, 5)] + [(1, o) for o in range(5)]

    def test_messages_produced_while_polling_arrive_in_order(self) -> None:
        topic = self.new_topic(1)
        source = self.consumer(topic)
        self.produce(topic, 0, 3)
        got = self.drain(source, 3)
        self.produce(topic, 0, 4, start=3)
        got += self.drain(source, 4)
        assert [o for _, o, *_ in got] == list(range(7))
        assert [v for *_, v, _ in got] == [value(0, i) for i in range(7)]

    def test_the_history_s_offsets_win_over_the_group_s_when_ahead(self) -> None:
        topic, group = self.new_topic(1), "g-ahead"
        self.produce(topic, 0, 10)
        first = self.consumer(topic, group)
        assert len(self.drain(first, 10)) == 10
        first.commit({0: 3})
        self.close(first)
        # DuckDB stored up to 7 but the Kafka commit was lost (a crash between the two commits)
        got = self.drain(self.consumer(topic, group, MemoryHistory(offsets={0: 7})), 3)
        assert [o for _, o, *_ in got] == [7, 8, 9]

    def test_a_history_behind_the_group_reads_again_what_it_lost(self) -> None:
        topic, group = self.new_topic(1), "g-behind"
        self.produce(topic, 0, 10)
        first = self.consumer(topic, group)
        assert len(self.drain(first, 10)) == 10
        first.commit({0: 9})
        self.close(first)
        got = self.drain(self.consumer(topic, group, MemoryHistory(offsets={0: 4})), 6)  # a restored backup
        assert [o for _, o, *_ in got] == list(range(4, 10))

    def test_a_new_history_claims_its_partitions_where_it_begins_reading(self) -> None:
        topic, group = self.new_topic(2), "g-claims"
        self.produce(topic, 0, 5)
        first = self.consumer(topic, group)
        assert len(self.drain(first, 5)) == 5
        first.commit({0: 5})
        self.close(first)
        history = MemoryHistory()
        self.produce(topic, 0, 1, start=5)
        assert [o for _, o, *_ in self.drain(self.consumer(topic, group, history), 1)] == [5]
        assert history.claimed == {0: 5, 1: None}  # partition 1: auto_offset_reset

    def test_static_partitions_are_read_alone_and_commit_only_what_they_own(self) -> None:
        topic, group = self.new_topic(3), "g-static"
        for p in range(3):
            self.produce(topic, p, 2)
        source = self.consumer(topic, group, static_partitions=[1])
        assert source.assigned_partitions() == [1]
        got = self.drain(source, 2)
        assert [(p, o) for p, o, *_ in got] == [(1, 0), (1, 1)]
        source.commit({0: 2, 1: 2})
        assert self.committed(group, topic) == {1: 2}

    def test_lag_counts_the_messages_behind_the_end_of_each_assigned_partition(self) -> None:
        topic = self.new_topic(2)
        self.produce(topic, 0, 10)
        source = self.consumer(topic, static_partitions=[0, 1])
        got: list[Message] = []
        deadline = time.monotonic() + self.join_s
        while not got and time.monotonic() < deadline:
            got = messages(source.poll(200, 4, None))
        assert [o for _, o, *_ in got] == [0, 1, 2, 3]
        lag = source.lag()
        if self.exact_end_offsets:
            assert lag == {0: 6, 1: 0}
        else:
            assert sorted(lag) == [0, 1]
            assert min(lag.values()) >= 0

    def test_closing_a_group_member_commits_the_write_in_flight(self) -> None:
        topic, group = self.new_topic(1), "g-close"
        self.produce(topic, 0, 6)
        history = MemoryHistory()
        source = self.consumer(topic, group, history)
        assert len(self.drain(source, 6)) == 6
        source.commit({0: 2})
        history.in_flight = {0: 6}  # stored by a write that finishes as the partitions go
        self.close(source)
        assert self.committed(group, topic) == {0: 6}
        assert history.handed_over == {}  # leaving is not a handover
