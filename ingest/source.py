"""The Kafka source: polls batches as columns, seeks to the offsets stored with the data, commits last.

On every partition assignment the consumer seeks to ``max(offset stored in DuckDB, offset committed to
Kafka)``: the DuckDB offset is the truth for this shard (it is written in the same transaction as the
rows), and a higher Kafka offset means another shard already stored those messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ingest.codec import RawBatch
from ingest.errors import SourceError
from ingest.settings import KafkaSettings

log = logging.getLogger(__name__)
StoredOffsets = Callable[[], dict[int, int]]
BeforeRevoke = Callable[[], dict[int, int]]


def consumer_config(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments for these settings (auto-commit always off)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.server_list(),
        "client_id": settings.client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": settings.auto_offset_reset,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "fetch_max_bytes": settings.fetch_max_bytes,
        "max_partition_fetch_bytes": settings.max_partition_fetch_bytes,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, name)
        if value is not None:
            config[name] = str(value)
    if settings.ssl_password is not None:
        config["ssl_password"] = settings.ssl_password.get_secret_value()
    return config


class _SeekToStored(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on kafka-python's IO loop, where blocking consumer calls are forbidden: awaits instead."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # A batch still being written must reach DuckDB and Kafka before its partitions move on;
        # waiting blocks kafka-python's IO loop for at most one batch write.
        offsets = self._source.before_revoke()
        if offsets:
            coordinator = self._source.consumer._coordinator
            await coordinator._commit_offsets_sync_async(self._source.offsets_to_commit(offsets))
        log.info("partitions revoked: %s (committed %s)", sorted(tp.partition for tp in revoked), offsets)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        partitions = list(assigned)
        # kafka-python 3 offers no public async committed() or commit(); its coordinator's coroutines
        # are the ones the blocking calls wrap (here and in on_partitions_revoked).
        committed = await self._source.consumer._coordinator.fetch_committed_offsets_async(partitions)
        self._source.seek_to_stored(partitions, {tp: meta.offset for tp, meta in committed.items()})


class KafkaSource:
    """One consumer on the telemetry topic, in a group or on static partitions."""

    def __init__(
        self, settings: KafkaSettings, stored_offsets: StoredOffsets, before_revoke: BeforeRevoke = dict
    ) -> None:
        self._stored_offsets = stored_offsets
        self.before_revoke = before_revoke
        self.topic = settings.topic
        try:
            self.consumer = KafkaConsumer(group_id=settings.group_id, **consumer_config(settings))
            partitions = self._static_partitions(settings)
            if partitions is None:
                self.consumer.subscribe([self.topic], listener=_SeekToStored(self))
            else:
                assigned = [TopicPartition(self.topic, p) for p in partitions]
                self.consumer.assign(assigned)
                self.seek_to_stored(assigned, {tp: self.consumer.committed(tp) for tp in assigned})
        except KafkaError as exc:
            raise SourceError(f"cannot connect to Kafka at {settings.bootstrap_servers}: {exc}") from exc

    def _static_partitions(self, settings: KafkaSettings) -> list[int] | None:
        """The fixed partitions of this daemon, or None for consumer-group assignment."""
        if settings.static_partitions is not None:
            return settings.static_partitions
        if settings.shard_index is None or settings.shard_count is None:
            return None
        existing = self.consumer.partitions_for_topic(self.topic)
        if not existing:
            raise SourceError(f"topic {self.topic} does not exist on {settings.bootstrap_servers}")
        owned = [p for p in sorted(existing) if settings.owns(p)]
        if not owned:
            raise SourceError(
                f"shard {settings.shard_index} of {settings.shard_count} owns none of {self.topic}'s "
                f"{len(existing)} partitions; use at most {len(existing)} shards"
            )
        log.info("shard %d of %d owns partitions %s", settings.shard_index, settings.shard_count, owned)
        return owned

    def seek_to_stored(self, partitions: list[TopicPartition], committed: dict[TopicPartition, int | None]) -> None:
        """Position each partition at max(DuckDB offset, Kafka committed offset)."""
        stored = self._stored_offsets()
        for tp in partitions:
            candidates = [o for o in (stored.get(tp.partition), committed.get(tp)) if o is not None and o >= 0]
            if candidates:
                self.consumer.seek(tp, max(candidates))
        log.info(
            "partitions assigned: %s (DuckDB offsets %s, Kafka committed %s)",
            sorted(tp.partition for tp in partitions),
            {tp.partition: stored.get(tp.partition) for tp in partitions},
            {tp.partition: committed.get(tp) for tp in partitions},
        )

    def poll(self, timeout_ms: int, max_records: int, top_up_ms: int | None = 50) -> RawBatch:
        """Up to ``max_records`` messages as a column batch (possibly empty).

        During a backlog one fetch returns about one partition's worth, often half of ``max_records``;
        while polls keep returning at least a quarter of it, more polls (waiting at most ``top_up_ms``
        each) fill the batch, so a batch's fixed costs (a transaction, the derived tables' queries) are
        paid once per ``max_records``. A live stream returns small polls and is not held back. None: one poll.
        """
        batch = RawBatch(self.topic)
        wait = timeout_ms
        while len(batch) < max_records:
            try:
                polled = self.consumer.poll(timeout_ms=wait, max_records=max_records - len(batch))
            except KafkaError as exc:
                raise SourceError(f"poll failed: {exc}") from exc
            got = 0
            for records in polled.values():
                got += len(records)
                for r in records:
                    batch.append(r.partition, r.offset, r.timestamp, r.key, r.value)
            if top_up_ms is None or got < max_records // 4:
                break
            wait = top_up_ms
        return batch

    def offsets_to_commit(self, next_offsets: dict[int, int]) -> dict[TopicPartition, OffsetAndMetadata]:
        """kafka-python's commit argument for per-partition next offsets."""
        return {TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in next_offsets.items()}

    def commit(self, next_offsets: dict[int, int]) -> None:
        """Commit the offsets a stored batch reached (after the DuckDB commit), for partitions still owned."""
        owned = {tp.partition for tp in self.consumer.assignment()}
        offsets = self.offsets_to_commit({p: o for p, o in next_offsets.items() if p in owned})
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            # The DuckDB offsets are the truth; a failed Kafka commit only delays the group's view.
            log.warning("Kafka offset commit failed (DuckDB holds the truth, continuing): %s", exc)

    def assigned_partitions(self) -> list[int]:
        """Partitions this consumer currently reads."""
        return sorted(tp.partition for tp in self.consumer.assignment())

    def lag(self) -> dict[int, int]:
        """Messages behind the broker's end offset, where the broker reports it."""
        assigned = list(self.consumer.assignment())
        if not assigned:
            return {}
        try:
            ends = self.consumer.end_offsets(assigned)
        except KafkaError:
            return {}
        return {tp.partition: max(0, ends[tp] - self.consumer.position(tp)) for tp in assigned}

    def close(self) -> None:
        """Leave the group and close connections."""
        self.consumer.close()
