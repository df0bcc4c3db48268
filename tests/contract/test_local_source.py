"""The source contract on ``ingest.local_source`` (in process), and what only the fake offers."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from ingest.errors import SourceError
from ingest.local_source import LocalBroker, LocalSource
from ingest.settings import KafkaSettings
from ingest.source_protocol import NoHistory, OffsetStore, Source
from tests.contract.source_contract import BASE_MS, SourceContract, value


class TestLocalSource(SourceContract):
    """``SourceContract`` on a ``LocalBroker``."""

    poll_slack_s = 0.1
    join_s = 5.0

    @pytest.fixture(autouse=True)
    def _broker(self) -> None:
        self.broker = LocalBroker()

    def bootstrap_servers(self) -> str:
        """Not dialled: the local broker is in process."""
        return "local:9092"

    def new_topic(self, partitions: int) -> str:
        """A fresh topic on the local broker."""
        topic = f"telemetry-{uuid.uuid4().hex[:10]}"
        self.broker.create_topic(topic, partitions)
        return topic

    def produce(self, topic: str, partition: int, count: int, start: int = 0) -> None:
        """Append the suite's messages."""
        for i in range(start, start + count):
            key = f"k{partition}".encode()
            self.broker.produce(topic, value(partition, i), key=key, partition=partition, timestamp_ms=BASE_MS + i)

    def build(self, settings: KafkaSettings, store: OffsetStore) -> Source:
        """A ``LocalSource`` through the factory the daemon takes."""
        return self.broker.consumer(settings, store)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The broker's committed offsets."""
        return self.broker.committed(group, topic)


def _settings(topic: str, **extra: object) -> KafkaSettings:
    return KafkaSettings.model_validate({"bootstrap_servers": "local:9092", "topic": topic, "group_id": "g", **extra})


def test_a_poll_wakes_up_when_a_message_is_produced() -> None:
    broker = LocalBroker()
    broker.create_topic("t", 1)
    source = LocalSource(broker, _settings("t"))
    timer = threading.Timer(0.1, lambda: broker.produce("t", b"late", partition=0))
    started = time.monotonic()
    timer.start()
    try:
        batch = source.poll(5_000, 10)
    finally:
        timer.join()
    assert batch.values == [b"late"]
    assert time.monotonic() - started < 2


def test_during_an_outage_polls_return_nothing_and_commits_are_carried_until_it_ends() -> None:
    broker = LocalBroker()
    broker.create_topic("t", 1)
    broker.produce("t", b"a", partition=0)
    source = LocalSource(broker, _settings("t"))
    assert len(source.poll(100, 10)) == 1
    broker.reachable = False
    broker.produce("t", b"b", partition=0)  # the producer side is not part of the simulated outage
    assert len(source.poll(50, 10)) == 0
    source.commit({0: 1})
    assert broker.committed("g", "t") == {}
    assert not source.state.reachable
    assert source.lag() == {}
    source.commit({0: 1})  # known to be away: carried without trying
    broker.reachable = True
    assert source.lag() == {0: 1}  # the probe answers: the broker is back
    source.retry_commit()
    assert broker.committed("g", "t") == {0: 1}
    assert [c.offsets for c in broker.commits] == [{0: 1}]


def test_a_group_has_one_member_per_topic_and_a_closed_consumer_polls_no_more() -> None:
    broker = LocalBroker()
    broker.create_topic("t", 2)
    first = LocalSource(broker, _settings("t"))
    first.poll(10, 10)
    second = LocalSource(broker, _settings("t"))
    with pytest.raises(SourceError, match="already has a consumer"):
        second.poll(10, 10)
    first.close()
    assert second.poll(10, 10) is not None
    with pytest.raises(SourceError, match="closed"):
        first.poll(10, 10)


def test_keys_choose_partitions_stably_and_shards_own_theirs() -> None:
    broker = LocalBroker()
    broker.create_topic("t", 4)
    placed = {broker.produce("t", b"v", key=b"sat-1/rack-2").partition for _ in range(5)}
    assert len(placed) == 1
    shard = LocalSource(broker, _settings("t", shard_index=1, shard_count=2), NoHistory())
    assert shard.assigned_partitions() == [1, 3]
    with pytest.raises(SourceError, match="does not exist"):
        LocalSource(broker, _settings("missing", shard_index=0, shard_count=2))
