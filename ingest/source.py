"""The Kafka source: polls batches as columns, seeks to the offsets stored with the data, commits last.

On every partition assignment each partition is positioned where ``ingest.resume`` decides: the offsets
DuckDB holds are the truth of this history (written in the same transaction as the rows), also when they
are behind Kafka's committed offsets; those are read again, with a warning. Calls to the broker are bounded
in time (an outage must not stall the loop, so liveness and queries go on), and their outcomes feed
``ingest.broker_state`` (one line when the broker stops answering, one when it is back).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ingest.assignment import resume_assigned, start_offset, static_partitions, warn_rereads
from ingest.broker_state import BrokerState
from ingest.codec import RawBatch
from ingest.errors import SourceError
from ingest.settings import KafkaSettings
from ingest.source_protocol import NoHistory, OffsetStore

# OffsetStore and NoHistory live in ingest.source_protocol (no Kafka there, for ingest.local_source too).
__all__ = ["COMMIT_TIMEOUT_MS", "PROBE_TIMEOUT_MS", "KafkaSource", "NoHistory", "OffsetStore", "consumer_config"]

log = logging.getLogger(__name__)
COMMIT_TIMEOUT_MS = 5_000
"""An offset commit waits at most this long (DuckDB holds the truth; the next commit carries it on)."""
PROBE_TIMEOUT_MS = 2_000
"""The end-offset probe (lag, and whether the broker answers) waits at most this long."""


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
        source = self._source
        partitions = sorted(tp.partition for tp in revoked)
        # Offsets carried since a failed commit (a broker outage) go with the partitions, then the newest.
        offsets = {**source.take_carried(partitions), **source.store.before_revoke()}
        if offsets:
            coordinator = source.consumer._coordinator
            await coordinator._commit_offsets_sync_async(source.offsets_to_commit(offsets))
        if not source.closing:  # a rebalance while running: another member takes these over
            stored = source.store.stored()
            source.store.record_handovers({p: stored[p] for p in partitions if p in stored})
            source.store.forget_claims([p for p in partitions if p not in stored])
        log.info("partitions revoked: %s (committed %s)", partitions, offsets)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        partitions = list(assigned)
        # kafka-python 3 offers no public async committed() or commit(); its coordinator's coroutines
        # are the ones the blocking calls wrap (here and in on_partitions_revoked).
        committed = await self._source.consumer._coordinator.fetch_committed_offsets_async(partitions)
        self._source.seek_to_stored(partitions, {tp: meta.offset for tp, meta in committed.items()})


class KafkaSource:
    """One consumer on the telemetry topic, in a group or on static partitions."""

    def __init__(self, settings: KafkaSettings, store: OffsetStore, broker: BrokerState | None = None) -> None:
        self.store = store
        self.broker = broker if broker is not None else BrokerState(settings.bootstrap_servers)
        self.topic = settings.topic
        self.closing = False
        self._auto_offset_reset = settings.auto_offset_reset
        self._next_offsets: dict[int, int] = {}  # per partition, the offset after the last one polled
        self._uncommitted: dict[int, int] = {}  # next offsets stored in DuckDB whose Kafka commit failed
        try:
            self.consumer = KafkaConsumer(group_id=settings.group_id, **consumer_config(settings))
            partitions = static_partitions(settings, lambda: self.consumer.partitions_for_topic(self.topic))
            self._grouped = partitions is None
            if partitions is None:
                self.consumer.subscribe([self.topic], listener=_SeekToStored(self))
            else:
                assigned = [TopicPartition(self.topic, p) for p in partitions]
                self.consumer.assign(assigned)
                self.seek_to_stored(assigned, {tp: self.consumer.committed(tp) for tp in assigned})
        except KafkaError as exc:
            raise SourceError(f"cannot connect to Kafka at {settings.bootstrap_servers}: {exc}") from exc

    def seek_to_stored(self, partitions: list[TopicPartition], committed: dict[TopicPartition, int | None]) -> None:
        """Position each partition where ``ingest.resume.resume_position`` says (DuckDB's offsets first)."""
        group_offsets: dict[int, int | None] = {}
        for tp in partitions:
            kafka = committed.get(tp)
            group_offsets[tp.partition] = kafka if kafka is not None and kafka >= 0 else None  # -1: none
        decided, stored = resume_assigned(self.store, group_offsets, grouped=self._grouped)
        for tp, resume in zip(partitions, decided, strict=True):
            start = start_offset(resume, group_offsets[tp.partition], self._auto_offset_reset)
            if start is not None:
                self.consumer.seek(tp, start)
            elif resume.source == "reread" and self._auto_offset_reset == "earliest":
                self.consumer.seek_to_beginning(tp)
        log.info(
            "partitions assigned: %s (DuckDB offsets %s, Kafka committed %s, resuming at %s)",
            sorted(tp.partition for tp in partitions),
            {tp.partition: stored.get(tp.partition) for tp in partitions},
            {tp.partition: committed.get(tp) for tp in partitions},
            {r.partition: r.offset if r.offset is not None else self._auto_offset_reset for r in decided},
        )
        warn_rereads(decided, self._auto_offset_reset)

    def poll(self, timeout_ms: int, max_records: int, top_up_ms: int | None = 50) -> RawBatch:
        """Up to ``max_records`` messages as a column batch (possibly empty).

        During a backlog one fetch returns about one partition's worth, often half of ``max_records``;
        while polls keep returning at least a quarter of it, more polls (waiting at most ``top_up_ms``
        each) fill the batch, so a batch's fixed costs (a transaction, the derived tables' queries) are
        paid once per ``max_records``. A poll returning less is topped up too while the broker is known
        to hold more (``_fetched_behind``): kafka-python returns one partition's fetch per poll, so a poll
        may return only what the previous batch left of a fetch (measured: batches alternated 4,000 and
        about 530 messages, and the small ones cost a wide fleet as much as the full ones). A live stream
        is not held back: its fetches return everything up to the broker's end (topping up every first
        poll instead cost 45 ms of p50 latency). None: one poll.
        """
        batch = RawBatch(self.topic)
        wait = timeout_ms
        while len(batch) < max_records:
            try:
                polled = self.consumer.poll(timeout_ms=wait, max_records=max_records - len(batch))
            except KafkaError as exc:
                raise SourceError(f"poll failed: {exc}") from exc
            if polled:
                self.broker.succeeded()
            got = 0
            for tp, records in polled.items():
                got += len(records)
                for r in records:
                    batch.append(r.partition, r.offset, r.timestamp, r.key, r.value)
                if records:
                    self._next_offsets[tp.partition] = records[-1].offset + 1
            if top_up_ms is None or got == 0 or (got < max_records // 4 and not self._fetched_behind()):
                break
            wait = top_up_ms
        return batch

    def _fetched_behind(self) -> bool:
        """True when a fetch response reported more messages than this consumer has polled (its high
        watermark beyond the next offset of a polled partition): a backlog, from kafka-python's state,
        without asking the broker."""
        assigned = self.consumer.assignment()
        for partition, next_offset in self._next_offsets.items():
            tp = TopicPartition(self.topic, partition)
            if tp not in assigned:
                continue
            highwater = self.consumer.highwater(tp)
            if highwater is not None and highwater > next_offset:
                return True
        return False

    def offsets_to_commit(self, next_offsets: dict[int, int]) -> dict[TopicPartition, OffsetAndMetadata]:
        """kafka-python's commit argument for per-partition next offsets."""
        return {TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in next_offsets.items()}

    def commit(self, next_offsets: dict[int, int]) -> None:
        """Commit the offsets a stored batch reached (after the DuckDB commit), for partitions still owned.

        Waits at most ``COMMIT_TIMEOUT_MS``; offsets whose commit failed are carried to the next call
        (``retry_commit`` sends them once the broker answers again). While the broker is known to be away, no
        commit is tried (each would block the loop for the timeout): the offsets are carried at once.
        """
        self._uncommitted.update(next_offsets)
        if not self.broker.reachable:
            return
        owned = {tp.partition for tp in self.consumer.assignment()}
        offsets = self.offsets_to_commit({p: o for p, o in self._uncommitted.items() if p in owned})
        self._uncommitted = {}
        if not offsets:
            return
        try:
            self.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            # The DuckDB offsets are the truth; a failed Kafka commit only delays the group's view.
            self._uncommitted = {tp.partition: meta.offset for tp, meta in offsets.items()}
            if self.broker.reachable:
                log.warning("Kafka offset commit failed (DuckDB holds the truth, retried): %s", exc)
            self.broker.failed("offset commit", exc)
            return
        self.broker.succeeded()

    def take_carried(self, partitions: list[int]) -> dict[int, int]:
        """The carried (not yet committed) offsets of ``partitions``, no longer carried."""
        carried = {p: self._uncommitted.pop(p, None) for p in partitions}  # pop: the main thread may commit now
        return {p: o for p, o in carried.items() if o is not None}

    def retry_commit(self) -> None:
        """Commit offsets an earlier commit could not (nothing when there are none)."""
        if self._uncommitted:
            self.commit({})

    def assigned_partitions(self) -> list[int]:
        """Partitions this consumer currently reads."""
        return sorted(tp.partition for tp in self.consumer.assignment())

    def lag(self) -> dict[int, int]:
        """Messages behind the broker's end offset, where the broker reports it (also probes the broker:
        an answer or its absence within ``PROBE_TIMEOUT_MS`` is reported to ``broker``)."""
        assigned = list(self.consumer.assignment())
        if not assigned:
            return {}
        try:
            ends = self.consumer.end_offsets(assigned, timeout_ms=PROBE_TIMEOUT_MS)
            self.broker.succeeded()
            return {
                tp.partition: max(0, ends[tp] - self.consumer.position(tp, timeout_ms=PROBE_TIMEOUT_MS))
                for tp in assigned
            }
        except KafkaError as exc:
            self.broker.failed("end offsets", exc)
            return {}

    def close(self) -> None:
        """Leave the group and close connections (the revocation that follows records no handover)."""
        self.closing = True
        self.consumer.close()
