"""The source contract on ``ingest.source.KafkaSource`` and a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import os
import uuid

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from ingest.admin import create_topic
from ingest.settings import KafkaSettings
from ingest.source import KafkaSource
from ingest.source_protocol import NoHistory, OffsetStore, Source
from tests.contract.source_contract import BASE_MS, SourceContract, value

pytestmark = pytest.mark.integration


class TestKafkaSource(SourceContract):
    """``SourceContract`` on the real broker of the integration tests."""

    exact_end_offsets = bool(os.environ.get("ORBITWATCH_TEST_BOOTSTRAP"))  # Tansu's end offsets are not

    @pytest.fixture(autouse=True)
    def _broker(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def bootstrap_servers(self) -> str:
        """The broker's servers."""
        return self.bootstrap

    def new_topic(self, partitions: int) -> str:
        """A fresh topic on the broker."""
        topic = f"contract-{uuid.uuid4().hex[:10]}"
        create_topic(self.bootstrap, topic, partitions)
        return topic

    def produce(self, topic: str, partition: int, count: int, start: int = 0) -> None:
        """Send the suite's messages and wait for their acknowledgements."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks=1, enable_idempotence=False)
        try:
            for i in range(start, start + count):
                key = f"k{partition}".encode()
                producer.send(topic, value=value(partition, i), key=key, partition=partition, timestamp_ms=BASE_MS + i)
            producer.flush(timeout=30)
        finally:
            producer.close()

    def build(self, settings: KafkaSettings, store: OffsetStore) -> Source:
        """A ``KafkaSource``."""
        return KafkaSource(settings, store)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's offsets as the broker's group coordinator answers them."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), client_id="contract-admin")
        try:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}

    def test_a_backlog_is_polled_in_full_batches(self) -> None:
        """kafka-python returns one partition's fetch per poll; a poll that returns only what the previous
        batch left of a fetch is topped up instead of becoming a batch of its own. Fetches here are one
        record batch of 110 messages, batches 200: with the rule "top up only while polls return a quarter
        of the batch", batches alternated 200 and 20 after a while (16 batches; in the fleet-shape backlog, 4,000
        and 530)."""
        topic = self.new_topic(2)
        producer = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks=1, enable_idempotence=False)
        try:
            for chunk in range(10):
                for p in range(2):
                    for i in range(chunk * 110, (chunk + 1) * 110):
                        producer.send(topic, value=value(p, i), key=f"k{p}".encode(), partition=p)
                producer.flush(timeout=30)  # one record batch of 110 per partition
        finally:
            producer.close()
        settings = KafkaSettings(
            bootstrap_servers=self.bootstrap,
            topic=topic,
            group_id=f"group-{uuid.uuid4().hex[:8]}",
            max_partition_fetch_bytes=1_024,  # one record batch per partition and fetch
            static_partitions=[0, 1],  # no group rebalance in the middle (an empty poll ends a batch)
            session_timeout_ms=4_000,
            heartbeat_interval_ms=1_000,
        )
        source = KafkaSource(settings, NoHistory())
        try:
            sizes: list[int] = []
            while sum(sizes) < 2_200 and len(sizes) < 100:
                batch = source.poll(5_000, 200, 2_000)
                if not batch:
                    break
                sizes.append(len(batch))
        finally:
            source.close()
        assert sum(sizes) == 2_200
        assert len(sizes) <= 12, sizes  # 11 full batches, at most one short one on the way (the old rule: 16)
