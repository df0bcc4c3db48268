"""Prometheus metrics of the ingestion daemon, on their own registry."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


@dataclass
class DaemonMetrics:
    """The daemon's counters and gauges; ``serve`` exposes them over HTTP."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self._server: tuple[WSGIServer, threading.Thread] | None = None
        r = self.registry
        self.messages = Counter("orbitwatch_messages_total", "Kafka messages consumed", registry=r)
        self.frames = Counter("orbitwatch_frames_stored_total", "Distinct frames stored", registry=r)
        self.samples = Counter("orbitwatch_gpu_samples_stored_total", "GPU samples stored", registry=r)
        self.duplicates = Counter("orbitwatch_duplicates_dropped_total", "Duplicate frames dropped", registry=r)
        self.dead_letters = Counter("orbitwatch_dead_letters_total", "Messages dead-lettered", registry=r)
        self.batch_seconds = Histogram(
            "orbitwatch_batch_seconds",
            "Time from poll to Kafka commit for one batch",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.lag = Gauge("orbitwatch_consumer_lag", "Messages behind the end offset", ["partition"], registry=r)
        self.queries = Counter(
            "orbitwatch_queries_total", "Queries served, by outcome (ok or the refusal)", ["outcome"], registry=r
        )
        self.query_seconds = Histogram(
            "orbitwatch_query_seconds",
            "Time to run and fetch one served query",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.last_batch = Gauge("orbitwatch_last_batch_timestamp_seconds", "When the last batch committed", registry=r)

    def observe_query(self, outcome: str, seconds: float) -> None:
        """Count one served query and its duration."""
        self.queries.labels(outcome=outcome).inc()
        self.query_seconds.observe(seconds)

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
