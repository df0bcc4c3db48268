"""The ingestion daemon: the flow of one batch, and the loop that runs it until told to stop."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import duckdb
import polars as pl

from alerting.rules.ruleset import RuleSet
from alerting.spool import apply_spool, spool_dir
from ingest.broker_state import BrokerState, QuietDuringOutage
from ingest.codec import FrameDecoder
from ingest.registry import SchemaRegistry
from ingest.source import KafkaSource
from ingest.source_protocol import Source, SourceFactory
from orbitwatch.archive_boundary import ArchiveBoundary
from orbitwatch.assemble import dead_reasons
from orbitwatch.chain import Prepared, batch_chain
from orbitwatch.daemon_parts import (
    alert_tables,
    background_services,
    delivery_worker,
    derived_tables,
    load_alert_rules,
    load_threads,
    newest_sample,
    open_history,
    query_service,
    retention_worker,
)
from orbitwatch.dlq_limit import DeadLetterLimit
from orbitwatch.inflight import FinishedWrite, InFlightWrite, seconds_since
from orbitwatch.metrics import DaemonMetrics
from orbitwatch.offset_store import HistoryOffsets
from orbitwatch.progress import Progress
from orbitwatch.report import Reporter
from orbitwatch.settings import Settings
from orbitwatch.steps import Message
from storage.errors import StorageError
from storage.retention import raw_archived_before
from storage.writer import HistoryWriter, StoredBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one committed batch did."""

    messages: int
    stored: StoredBatch


class Daemon:
    """Polls Kafka and submits each batch to the chain (``orbitwatch.chain``): decode -> prepare -> admit ->
    store -> commit offsets; DuckDB stores one batch while the next is polled and decoded."""

    def __init__(self, settings: Settings, *, source: SourceFactory = KafkaSource) -> None:
        """Open the history and build every step; ``source`` builds the consumer (``LocalBroker.consumer``
        runs the batch loop in process). Builders are in ``orbitwatch.daemon_parts``."""
        self.settings = settings
        rules = load_alert_rules(settings)  # a bad rules file stops the daemon before it opens anything
        self._con, archive = open_history(settings)
        try:
            self._build_writer(rules)
            self._build_services(archive)
            self._build_source(source)
        except BaseException:  # a part that cannot be built (a bad hook, an unreachable broker) leaves nothing open
            delivery = getattr(self, "delivery", None)  # built before the part that failed, if it was
            if delivery is not None:
                delivery.close_hooks()
            self._con.close()
            raise
        self.chain = batch_chain(
            self.decoder,
            lambda: self.boundary.value,  # frames of days archived (or due): stored, outside the derived tables
            self.in_flight,
            self._committed,
            admit=self._admit,
            commit=self.source.commit,
        )
        self._results: list[BatchResult] = []
        self._stopping = False
        self._last_alive = 0.0
        self._last_lag = 0.0
        self._checkpointed = False  # once after the first batch: the history's offsets then live in the file
        self._progress = Progress(self.writer.stored_offsets(settings.kafka.topic))
        self._last_data = self._last_refresh = time.monotonic()

    def _build_writer(self, rules: RuleSet | None) -> None:
        """The writer (raw rows, derived tables, alert step in one transaction), its delivery worker and the
        write in flight."""
        alerts = alert_tables(self._con, self.settings, rules)
        self.writer = HistoryWriter(self._con, derived_tables(self._con, self.settings), alerts)
        self.alerts = alerts if self.writer.derived is not None else None  # the writer's step, when it derives
        self.delivery = (
            delivery_worker(self._con, rules, self.settings, alerts.firing_for)
            if rules is not None and alerts is not None
            else None
        )
        self.in_flight = InFlightWrite(self.writer)

    def _build_services(self, archive: Path) -> None:
        """Metrics, the query service, retention and its archive boundary, and the background services."""
        settings = self.settings
        self.metrics = DaemonMetrics()
        self.metrics.freshness.observe(self.writer.newest_by_satellite())  # satellites silent since a restart
        if (delivery := self.delivery) is not None:
            self.metrics.watch_backlog(lambda: delivery.backlog)
        self.backlogged = False  # the last batch was full: more is waiting (queries are paced meanwhile)
        self.threads = load_threads(self._con, settings)  # DuckDB's threads: 1 while ingesting, all cores idle
        self.queries = query_service(self._con, settings, self.metrics, lambda: self.backlogged, self.status)
        self.retention = retention_worker(self._con, archive, settings)
        self.services = background_services(
            settings, self.metrics, delivery=self.delivery, retention=self.retention, queries=self.queries
        )
        r = settings.retention
        self.boundary = ArchiveBoundary(
            newest_sample(self._con), r.raw_days if r.enabled else None, raw_archived_before(self._con)
        )
        if self.retention is not None:
            self.retention.job.raw_fence = self.boundary.value  # nothing in flight yet

    def _build_source(self, source: SourceFactory) -> None:
        """The decoder, the broker's state (kafka-python's reconnect logs quietened during an outage), the
        offsets kept in the history, the consumer, the dead-letter limit."""
        settings = self.settings
        self.decoder = FrameDecoder(SchemaRegistry(settings.registry.contract_dir, settings.registry.url))
        self.broker = BrokerState(settings.kafka.bootstrap_servers)
        self.offsets = HistoryOffsets(self.writer, settings.kafka.topic, self.in_flight)
        self.source: Source = source(settings.kafka, self.offsets, self.broker)
        self._quiet = QuietDuringOutage(self.broker)
        for handler in logging.getLogger().handlers:  # kafka-python logs each failed reconnect
            handler.addFilter(self._quiet)
        d = settings.daemon
        self.dlq_limit = DeadLetterLimit(d.dlq_max_ratio, d.dlq_window_messages, d.dlq_max_consecutive)

    def run_batch(self) -> BatchResult | None:
        """Poll one batch and submit it to the chain; returns the batch before it once DuckDB and then Kafka
        committed it (after an empty poll: the write in flight, once committed)."""
        polled_at = time.perf_counter()
        d = self.settings.daemon
        raw = self.source.poll(d.poll_timeout_ms, d.max_batch_messages, d.poll_top_up_ms)
        self.backlogged = len(raw) >= d.max_batch_messages
        if self.threads is not None:
            self.threads.observe(len(raw))
        if raw:
            self.chain.submit(Message.of(raw, polled_at))
        else:
            self.chain.join()
        return self._take_result()

    def commit_finished(self) -> BatchResult | None:
        """Wait for the write in flight, then commit its offsets to Kafka (offsets are committed last)."""
        self.chain.join()
        return self._take_result()

    def _admit(self, batch: Prepared) -> None:
        """The dead-letter guard: raises before anything of the batch is stored."""
        self.dlq_limit.check(dead_reasons(batch.raw, batch.batch.dead_letters))
        self.boundary.observe(batch.prepared.rack_rows)

    def _committed(self, message: Message[FinishedWrite]) -> None:
        """After DuckDB and then Kafka committed a batch (the chain's last step; no write in flight)."""
        finished = message.payload
        self._observe(message)
        self._progress.committed(dict(message.committable), message.messages)
        if not self._checkpointed or self.offsets.unsaved_claims:
            self.checkpoint_history()
        if self.retention is not None:  # no batch prepared below this boundary is in flight any more
            self.retention.job.raw_fence = finished.batch.archived_before
        self.apply_alert_commands()  # alerts CLI: no write in flight now (taken, the next not submitted)
        if self.delivery is not None and self.alerts is not None and self.alerts.last_enqueued:
            self.delivery.wake()
        self._results.append(BatchResult(message.messages, finished.stored))

    def _take_result(self) -> BatchResult | None:
        results, self._results = self._results, []
        if len(results) > 1:  # one write is in flight at a time: a submit or join hands on at most one
            raise RuntimeError(f"{len(results)} batches committed by one step of the chain")
        return results[0] if results else None

    def run(self, *, exit_when_idle_s: float | None = None, max_messages: int | None = None) -> int:
        """Run batches until SIGTERM/SIGINT, idleness or a message budget; returns messages committed."""
        self._install_signal_handlers()
        self.services.start()
        consumed, idle_since = 0, time.monotonic()
        report = Reporter()
        try:
            while not self._stopping:
                self.touch_liveness()
                self.update_lag()
                self._progress.assigned = self.source.assigned_partitions()
                result = self.run_batch()
                if result is None:
                    self.refresh_health_now()
                    if self.in_flight.busy or not self.source.assigned_partitions():
                        idle_since = time.monotonic()  # idle: partitions assigned, nothing arrives, nothing in flight
                    elif exit_when_idle_s is not None and time.monotonic() - idle_since > exit_when_idle_s:
                        log.info("idle for %.0f s, stopping", exit_when_idle_s)
                        break
                    continue
                idle_since = self._last_data = time.monotonic()
                consumed += result.messages
                report.add(result.messages, result.stored)
                if max_messages is not None and consumed >= max_messages:
                    break
        finally:
            last = self.commit_finished()
            if last is not None:
                consumed += last.messages
                report.add(last.messages, last.stored)
            report.flush()
        self.refresh_health_now(force=True)  # the last batches' ground clock, judged before exiting
        return consumed

    def refresh_health_now(self, *, force: bool = False) -> None:
        """While idle, re-judge ``fleet_health_now``: at once after data, then every ``now_refresh_s``.

        Every batch judges "now" as of its own ground clock; the first idle poll
        after data brings it up to date, and later ones age the silence.
        """
        if self.in_flight.busy:  # the connection belongs to the write in flight
            return
        self.apply_alert_commands()  # alerts CLI: spooled acks and shelves, on every idle poll
        now = time.monotonic()
        fresh_data = self._last_data >= self._last_refresh
        if not (force or fresh_data or now - self._last_refresh >= self.settings.processing.now_refresh_s):
            return
        self._last_refresh = now
        changed = self.writer.refresh_now(advanced_by=now - self._last_data)
        if changed:
            log.info("fleet health: %d rack(s) changed state while idle", changed)

    def apply_alert_commands(self) -> None:
        """Apply the acks and shelves ``orbitwatch alerts`` spooled (call only with no write in flight).

        Added for the alerts CLI; a failure is logged and the commands are retried at the next call.
        """
        try:
            result = apply_spool(spool_dir(self.settings.storage.path), self.alerts)
        except (StorageError, OSError) as exc:
            log.error("alert commands not applied (retried later): %s", exc)
            return
        for name, command, fingerprints in result.applied:
            log.info("alert command %s applied: %s -> %s", name, command.describe(), ", ".join(fingerprints))
        for name, reason in result.rejected:
            log.warning("alert command %s rejected (moved to rejected/): %s", name, reason)

    def close(self) -> None:
        """Finish the write in flight, stop the background services that started (in reverse order), leave
        the consumer group, close the database (checkpointing it). Safe whether or not ``run`` ran."""
        self.chain.terminate()  # waits for a write in flight; the rebalance listener commits it as we leave the group
        self._flush_held()
        self.services.stop()
        if self.delivery is not None:
            self.delivery.close_hooks()
        self.source.close()
        if self.threads is not None:
            self.threads.close()
        self._con.close()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._quiet)
        log.info("closed")

    def _flush_held(self) -> None:
        """Write the open minutes held in memory before the database closes (a failure loses nothing: the
        next start recomputes them from their raw rows)."""
        try:
            written = self.writer.flush_held()
        except StorageError as exc:
            log.error("the open minutes were not written (the next start recomputes them): %s", exc)
            return
        if written:
            log.info("wrote %d open minute(s) held in memory", written)

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

    def update_lag(self, every_s: float = 10.0, outage_every_s: float = 2.0) -> None:
        """Refresh the consumer lag (where the broker reports end offsets) at most every ``every_s``,
        which also probes the broker; during an outage every ``outage_every_s``, and once it answers
        again, commit the offsets it missed."""
        now = time.monotonic()
        was_reachable = self.broker.reachable
        if now - self._last_lag < (every_s if was_reachable else outage_every_s):
            return
        self._last_lag = now
        lag = self.source.lag()
        if lag:
            self.metrics.observe_lag(self.settings.kafka.topic, lag)
            self._progress.lag = lag
        self.boundary.lag(lag)  # a partition behind holds retention back
        if self.broker.reachable and not was_reachable:
            self.source.retry_commit()
        state = self.broker.status()
        self.metrics.observe_broker(state.reachable, state.outages)

    def checkpoint_history(self) -> None:
        """CHECKPOINT after the first committed batch, and after a batch that follows new partition claims
        (no write in flight then), so the file itself holds offsets and claims: a history whose WAL is lost
        later re-reads from them (``ingest.resume``) instead of looking new."""
        self._checkpointed = True
        claims, self.offsets.unsaved_claims = self.offsets.unsaved_claims, False
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            self.offsets.unsaved_claims = claims  # retried after the next batch
            log.warning(
                "CHECKPOINT of %s failed (retried after the next batch%s): %s",
                self.settings.storage.path,
                " with new partition claims" if claims else " or at the next start",
                exc,
            )

    def status(self) -> dict[str, object]:
        """What ``GET /v1/status`` answers: the broker's state, each partition's offsets and lag, the last
        commit (called from query threads: reads only in-memory snapshots, never the connection)."""
        broker = self.broker.status()
        return {
            "broker": {
                "servers": self.settings.kafka.bootstrap_servers,
                "reachable": broker.reachable,
                "since": broker.since.isoformat() if broker.since is not None else None,
                "outage_s": round(broker.outage_s, 1) if broker.outage_s is not None else None,
                "outages": broker.outages,
            },
            "topic": self.settings.kafka.topic,
            "assigned": self._progress.assigned,
            "partitions": self._progress.partitions(),
            "last_commit": self._progress.last_commit.isoformat() if self._progress.last_commit else None,
            "messages_committed": self._progress.messages,
            "backlogged": self.backlogged,
        }

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("%s received: finishing the current batch, then stopping", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _observe(self, message: Message[FinishedWrite]) -> None:
        batch = message.payload.batch
        newest = batch.rack_rows.group_by("satellite_id").agg(pl.col("sampled_at").max())
        seconds = seconds_since(message.polled_at)
        self.metrics.observe_batch(batch.topic, message.payload.stored, dict(newest.iter_rows()), seconds)


def liveness_ok(path: Path, max_age_s: float) -> bool:
    """True when the liveness file was touched within ``max_age_s`` seconds."""
    try:
        return time.time() - path.stat().st_mtime <= max_age_s
    except FileNotFoundError:
        return False
