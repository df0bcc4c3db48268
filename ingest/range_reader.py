"""Reading a time range of the topic again, without a consumer group, for replays and backfills.

Messages are selected by their Kafka timestamp (when the ground received the frame). Partitions are read
from their earliest offset: the embedded broker (Tansu) answers ``offsets_for_times`` wrongly, so seeking
by time is opt-in (``seek_by_time``) for brokers that implement it (Apache Kafka, Redpanda).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from ingest.codec import RawBatch
from ingest.errors import SourceError
from ingest.settings import KafkaSettings
from ingest.source import consumer_config

log = logging.getLogger(__name__)
# Kafka timestamps are producer (ground receive) times, nearly ordered within a partition: a partition is
# finished once it shows a message this far past the end of the range.
END_GRACE = timedelta(minutes=1)


class RangeReader:
    """Batches of the messages whose timestamps lie in ``[start, end)``, on the partitions the settings own."""

    def __init__(self, settings: KafkaSettings, start: datetime, end: datetime, *, seek_by_time: bool = False) -> None:
        self.topic = settings.topic
        self._start_ms = int(start.timestamp() * 1000)
        self._end_ms = int(end.timestamp() * 1000)
        self._done_ms = int((end + END_GRACE).timestamp() * 1000)
        self._finished: set[int] = set()
        self.scanned = 0
        config = consumer_config(settings) | {"auto_offset_reset": "earliest"}
        try:
            self._consumer = KafkaConsumer(group_id=None, **config)
            existing = self._consumer.partitions_for_topic(self.topic) or set()
            chosen = [p for p in sorted(existing) if settings.owns(p)]
            if not chosen:
                raise SourceError(f"topic {self.topic} has no partition this daemon owns")
            self.partitions = [TopicPartition(self.topic, p) for p in chosen]
            self._consumer.assign(self.partitions)
            self._position(seek_by_time)
        except KafkaError as exc:
            raise SourceError(f"cannot read {self.topic} from {settings.bootstrap_servers}: {exc}") from exc

    def _position(self, seek_by_time: bool) -> None:
        if not seek_by_time:
            self._consumer.seek_to_beginning(*self.partitions)
            return
        found = self._consumer.offsets_for_times(dict.fromkeys(self.partitions, self._start_ms))
        for tp, hit in found.items():
            if hit is None:
                self._finished.add(tp.partition)
                self._consumer.pause(tp)
            else:
                self._consumer.seek(tp, hit.offset)

    @property
    def finished(self) -> bool:
        """True when every partition has passed the end of the range."""
        return len(self._finished) == len(self.partitions)

    def poll(self, timeout_ms: int, max_records: int) -> RawBatch:
        """The next messages inside the range (possibly none, while others are skipped)."""
        try:
            polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise SourceError(f"poll failed: {exc}") from exc
        batch = RawBatch(self.topic)
        for tp, records in polled.items():
            self.scanned += len(records)
            for r in records:
                if self._start_ms <= r.timestamp < self._end_ms:
                    batch.append(r.partition, r.offset, r.timestamp, r.key, r.value)
            if records and records[-1].timestamp >= self._done_ms:
                self._finished.add(tp.partition)
                self._consumer.pause(tp)
        return batch

    def close(self) -> None:
        """Close the connections."""
        self._consumer.close()
