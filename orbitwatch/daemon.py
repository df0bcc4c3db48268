"""The ingestion daemon: the flow of one batch, and the loop that runs it until told to stop."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import polars as pl

from ingest.codec import DecodedBatch, FrameDecoder, RawBatch
from ingest.registry import SchemaRegistry
from ingest.settings import Settings
from ingest.source import KafkaSource
from orbitwatch.dlq_limit import DeadLetterLimit
from orbitwatch.metrics import DaemonMetrics
from processing.rows import PreparedBatch, prepare_batch
from storage.database import open_database
from storage.writer import BatchToStore, HistoryWriter, PartitionProgress, StoredBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did."""

    messages: int
    stored: StoredBatch


class Daemon:
    """Kafka -> decode -> process -> DuckDB -> commit, one batch at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._con = open_database(
            settings.storage.path,
            memory_limit=settings.storage.memory_limit,
            threads=settings.storage.threads,
        )
        self.writer = HistoryWriter(self._con)
        self.decoder = FrameDecoder(SchemaRegistry(settings.registry.contract_dir, settings.registry.url))
        topic = settings.kafka.topic
        self.source = KafkaSource(settings.kafka, lambda: self.writer.stored_offsets(topic))
        d = settings.daemon
        self.dlq_limit = DeadLetterLimit(d.dlq_max_ratio, d.dlq_window_messages, d.dlq_max_consecutive)
        self.metrics = DaemonMetrics()
        self._stopping = False
        self._last_alive = 0.0

    def run_batch(self) -> BatchResult | None:
        """The flow of one batch. Offsets reach Kafka only after DuckDB committed the rows."""
        started = time.perf_counter()
        raw = self.source.poll(self.settings.daemon.poll_timeout_ms, self.settings.daemon.max_batch_messages)
        if not raw:
            return None
        decoded = self.decoder.decode(raw)  # malformed messages become dead letters
        prepared = prepare_batch(decoded.frames)  # impossible frames rejected, duplicates in batch dropped
        batch = to_store(raw, decoded, prepared)
        self.dlq_limit.check(dead_flags(raw, batch.dead_letters))  # raises before anything is stored
        stored = self.writer.write(batch)  # one transaction: rows, dead letters, offsets
        self.source.commit({p: progress.next_offset for p, progress in batch.progress.items()})
        self._observe(len(raw), stored, time.perf_counter() - started)
        return BatchResult(len(raw), stored)

    def run(self, *, exit_when_idle_s: float | None = None, max_messages: int | None = None) -> int:
        """Run batches until SIGTERM/SIGINT, idleness or a message budget; returns messages consumed."""
        self._install_signal_handlers()
        if self.settings.daemon.metrics_port is not None:
            port = self.metrics.serve(self.settings.daemon.metrics_host, self.settings.daemon.metrics_port)
            log.info("metrics on http://%s:%d/metrics", self.settings.daemon.metrics_host, port)
        consumed, idle_since = 0, time.monotonic()
        report = _Reporter()
        while not self._stopping:
            self.touch_liveness()
            result = self.run_batch()
            if result is None:
                if exit_when_idle_s is not None and time.monotonic() - idle_since > exit_when_idle_s:
                    log.info("idle for %.0f s, stopping", exit_when_idle_s)
                    break
                continue
            idle_since = time.monotonic()
            consumed += result.messages
            report.add(result)
            if max_messages is not None and consumed >= max_messages:
                break
        report.flush()
        return consumed

    def close(self) -> None:
        """Leave the consumer group and close the database (checkpointing it)."""
        self.source.close()
        self._con.close()
        log.info("closed")

    def stop(self) -> None:
        """Ask the loop to stop after the batch in hand is stored and committed."""
        self._stopping = True

    def touch_liveness(self) -> None:
        """Touch the liveness file at most once a second."""
        path = self.settings.daemon.liveness_file
        now = time.monotonic()
        if path is not None and now - self._last_alive >= 1.0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            self._last_alive = now

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("%s received: finishing the current batch, then stopping", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _observe(self, messages: int, stored: StoredBatch, seconds: float) -> None:
        m = self.metrics
        m.messages.inc(messages)
        m.frames.inc(stored.frames_stored)
        m.samples.inc(stored.samples_stored)
        m.duplicates.inc(stored.duplicates_dropped)
        m.dead_letters.inc(stored.dead_letters)
        m.batch_seconds.observe(seconds)
        m.last_batch.set_to_current_time()


def to_store(raw: RawBatch, decoded: DecodedBatch, prepared: PreparedBatch) -> BatchToStore:
    """Assemble what the writer stores: rows, dead letters (undecodable and rejected), offsets."""
    rejected = {(p, o): reason for p, o, reason in prepared.rejected.iter_rows()}
    position = {(p, o): i for i, (p, o) in enumerate(zip(raw.partitions, raw.offsets, strict=True))}
    letters = [(d.partition, d.offset, d.reason) for d in decoded.dead_letters]
    letters += [(p, o, reason) for (p, o), reason in rejected.items()]
    rows = [position[(p, o)] for p, o, _ in letters]
    dead = pl.DataFrame(
        {
            "topic": [raw.topic] * len(letters),
            "kafka_partition": [p for p, _, _ in letters],
            "kafka_offset": [o for _, o, _ in letters],
            "kafka_timestamp": [raw.timestamps_ms[i] for i in rows],
            "message_key": [raw.keys[i] for i in rows],
            "raw_value": [raw.values[i] for i in rows],
            "reason": [r for _, _, r in letters],
        },
        schema={
            "topic": pl.String,
            "kafka_partition": pl.Int32,
            "kafka_offset": pl.Int64,
            "kafka_timestamp": pl.Int64,
            "message_key": pl.Binary,
            "raw_value": pl.Binary,
            "reason": pl.String,
        },
    ).with_columns(pl.from_epoch("kafka_timestamp", "ms").dt.replace_time_zone("UTC"))
    progress: dict[int, PartitionProgress] = {}
    counts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for p, o in zip(raw.partitions, raw.offsets, strict=True):
        counts[p] = counts.get(p, 0) + 1
        ends[p] = max(ends.get(p, -1), o + 1)
    for p, n in counts.items():
        progress[p] = PartitionProgress(ends[p], n, prepared.duplicates_by_partition.get(p, 0))
    return BatchToStore(raw.topic, prepared.rack_rows, prepared.gpu_rows, dead, progress)


def dead_flags(raw: RawBatch, dead: pl.DataFrame) -> list[bool]:
    """Per message, in stream order: was it dead-lettered?"""
    bad = set(zip(dead["kafka_partition"].to_list(), dead["kafka_offset"].to_list(), strict=True))
    return [(p, o) in bad for p, o in zip(raw.partitions, raw.offsets, strict=True)]


class _Reporter:
    """Logs what happened every 10 seconds: frames, samples/s, duplicates, dead letters."""

    def __init__(self, every_s: float = 10.0) -> None:
        self._every_s = every_s
        self._since = time.monotonic()
        self._messages = self._frames = self._samples = self._duplicates = self._dead = 0

    def add(self, result: BatchResult) -> None:
        self._messages += result.messages
        self._frames += result.stored.frames_stored
        self._samples += result.stored.samples_stored
        self._duplicates += result.stored.duplicates_dropped
        self._dead += result.stored.dead_letters
        if time.monotonic() - self._since >= self._every_s:
            self.flush()

    def flush(self) -> None:
        elapsed = max(time.monotonic() - self._since, 1e-9)
        if self._messages:
            log.info(
                "stored %d frames (%d GPU samples, %.0f samples/s) from %d messages; "
                "%d duplicates dropped, %d dead letters",
                self._frames,
                self._samples,
                self._samples / elapsed,
                self._messages,
                self._duplicates,
                self._dead,
            )
        self._since = time.monotonic()
        self._messages = self._frames = self._samples = self._duplicates = self._dead = 0


def liveness_ok(path: Path, max_age_s: float) -> bool:
    """True when the liveness file was touched within ``max_age_s`` seconds."""
    try:
        return time.time() - path.stat().st_mtime <= max_age_s
    except FileNotFoundError:
        return False
