"""Prometheus metrics of the ingestion daemon, on their own registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storage.writer import StoredBatch

OUTCOMES = ("stored", "duplicate", "dead_letter")
"""What becomes of a consumed message: exactly one of these, so they add up to the messages consumed."""


class SatelliteFreshness(Collector):
    """``orbitwatch_satellite_newest_frame_age_seconds{satellite}``: now minus the newest frame's ``sampled_at``.

    Event time, not arrival time: a pass that plays back hours of stored frames makes a satellite fresh
    only as far as the newest frame it sampled. The age is computed at scrape time, so it grows while a
    satellite is silent; satellites stay listed once seen (seeded from the database at start-up).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._newest: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def observe(self, newest: Mapping[str, datetime]) -> None:
        """Fold in the newest ``sampled_at`` per satellite of a stored batch (or of the database)."""
        with self._lock:
            for satellite, sampled_at in newest.items():
                seconds = sampled_at.timestamp()
                if seconds > self._newest.get(satellite, float("-inf")):
                    self._newest[satellite] = seconds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per satellite seen (the registry calls this at each scrape)."""
        family = GaugeMetricFamily(
            "orbitwatch_satellite_newest_frame_age_seconds",
            "Seconds since the newest stored frame of the satellite was sampled (event time)",
            labels=["satellite"],
        )
        now = self._clock()
        with self._lock:
            newest = sorted(self._newest.items())
        for satellite, seconds in newest:
            family.add_metric([satellite], now - seconds)
        yield family


@dataclass
class DaemonMetrics:
    """The daemon's counters and gauges; ``serve`` exposes them over HTTP."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], float] = time.time  # wall-clock seconds: what the satellites' frame ages count from

    def __post_init__(self) -> None:
        self._server: tuple[WSGIServer, threading.Thread] | None = None
        self._outages_counted = 0
        r = self.registry
        self.messages = Counter(
            "orbitwatch_messages",
            "Kafka messages consumed, by what became of them: stored, duplicate (dropped) or dead_letter",
            ["topic", "partition", "outcome"],
            registry=r,
        )
        self.samples = Counter("orbitwatch_gpu_samples_stored_total", "GPU samples stored", registry=r)
        self.batch_seconds = Histogram(
            "orbitwatch_batch_seconds",
            "Time from poll to Kafka commit for one batch",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.lag = Gauge(
            "orbitwatch_consumer_lag", "Messages behind the end offset", ["topic", "partition"], registry=r
        )
        self.queries = Counter(
            "orbitwatch_queries_total", "Queries served, by outcome (ok or the refusal)", ["outcome"], registry=r
        )
        self.query_seconds = Histogram(
            "orbitwatch_query_seconds",
            "Time to run and fetch one served query",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.query_phase_seconds = Histogram(
            "orbitwatch_query_phase_seconds",
            "Where answered queries' time went, by phase (the Server-Timing header's: queue, pace, guard, begin, "
            "execute, execute_cpu, convert, commit, encode)",
            ["phase"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.last_batch = Gauge("orbitwatch_last_batch_timestamp_seconds", "When the last batch committed", registry=r)
        self.notifications_pending = Gauge(
            "orbitwatch_notifications_pending",
            "Alert notifications in the outbox not yet delivered (0 without alert rules)",
            registry=r,
        )
        self.broker_reachable = Gauge(
            "orbitwatch_broker_reachable",
            "1 while the Kafka broker answers the daemon's calls, 0 during an outage",
            registry=r,
        )
        self.broker_reachable.set(1)
        self.broker_outages = Counter(
            "orbitwatch_broker_outages", "Times the Kafka broker stopped answering (outages begun)", registry=r
        )
        self.freshness = SatelliteFreshness(self.clock)
        r.register(self.freshness)

    def observe_batch(self, topic: str, stored: StoredBatch, newest: Mapping[str, datetime], seconds: float) -> None:
        """Count one committed batch: its messages by partition and outcome, samples, duration, freshness."""
        for partition, done in stored.by_partition.items():
            for outcome, n in zip(OUTCOMES, (done.stored, done.duplicates, done.dead_letters), strict=True):
                self.messages.labels(topic=topic, partition=str(partition), outcome=outcome).inc(n)
        self.samples.inc(stored.samples_stored)
        self.batch_seconds.observe(seconds)
        self.last_batch.set_to_current_time()
        self.freshness.observe(newest)

    def observe_lag(self, topic: str, lag: Mapping[int, int]) -> None:
        """Set the consumer lag of each assigned partition."""
        for partition, behind in lag.items():
            self.lag.labels(topic=topic, partition=str(partition)).set(behind)

    def observe_broker(self, reachable: bool, outages: int) -> None:
        """Set the broker's state (``ingest.broker_state.BrokerState``): reachable, and outages so far."""
        self.broker_reachable.set(1 if reachable else 0)
        self.broker_outages.inc(max(0, outages - self._outages_counted))
        self._outages_counted = max(self._outages_counted, outages)

    def watch_backlog(self, pending: Callable[[], float]) -> None:
        """Read ``orbitwatch_notifications_pending`` from ``pending`` at each scrape."""
        self.notifications_pending.set_function(pending)

    def observe_query(self, outcome: str, seconds: float) -> None:
        """Count one served query and its duration."""
        self.queries.labels(outcome=outcome).inc()
        self.query_seconds.observe(seconds)

    def observe_query_phases(self, phases: Mapping[str, float]) -> None:
        """Add one answered query's phases (seconds by name) to ``orbitwatch_query_phase_seconds``."""
        for phase, seconds in phases.items():
            self.query_phase_seconds.labels(phase=phase).observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint in a daemon thread; returns the bound port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = (server, thread)
        return int(server.server_port)

    def shutdown(self) -> None:
        """Stop the HTTP endpoint ``serve`` started (nothing if it was not started)."""
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join()
            self._server = None
