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
from ingest.source_protocol import OffsetStore, Source
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
