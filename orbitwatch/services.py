"""The daemon's background services (alert delivery, retention, query service, metrics) and their lifecycle.

Every service has the same two methods, ``start`` and ``stop``. ``Services`` starts them in the order they
were added and stops them in the reverse order; it stops only what it started, so stopping a daemon that
never ran its loop (the demo and the benchmarks drive ``Daemon.run_batch`` themselves) is a no-op for each
service, and a service that fails to start has the ones before it stopped again before the error goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from orbitwatch.errors import ConfigError
from orbitwatch.metrics import DaemonMetrics
from orbitwatch.query_service import QueryService

log = logging.getLogger(__name__)


class Service(Protocol):
    """A background part of the daemon with its own thread (or server)."""

    name: str

    def start(self) -> None:
        """Start working in the background."""

    def stop(self) -> object:
        """Stop and release what ``start`` took; called only after a successful ``start``."""


class Services:
    """Background services started in order and stopped in reverse order."""

    def __init__(self) -> None:
        self._added: list[Service] = []
        self._started: list[Service] = []

    def add(self, service: Service | None) -> None:
        """Add ``service`` (None: the settings do not ask for it)."""
        if service is not None:
            self._added.append(service)

    @property
    def names(self) -> list[str]:
        """The names of the services added, in start order."""
        return [s.name for s in self._added]

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return bool(self._started)

    def start(self) -> None:
        """Start every service not yet started; if one fails, stop those started and re-raise."""
        for service in self._added:
            if service in self._started:
                continue
            try:
                service.start()
            except BaseException:
                self.stop()
                raise
            self._started.append(service)
            log.debug("%s started", service.name)

    def stop(self) -> None:
        """Stop the started services in reverse order; an error stopping one is logged and the rest go on."""
        while self._started:
            service = self._started.pop()
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
            else:
                log.debug("%s stopped", service.name)


class QueryEndpoint:
    """The query service's HTTP endpoint as a service: listens on ``start``, stops listening on ``stop``."""

    name = "query service"

    def __init__(self, service: QueryService, host: str, port: int, discovery: Path) -> None:
        self.service = service
        self._host, self._port, self._discovery = host, port, discovery

    def start(self) -> None:
        """Listen (a port that cannot be bound is a ConfigError naming ``query.port``; a discovery file that cannot
        be written, a ``DiscoveryFileError`` naming the file and the cause, e.g. a full disk)."""
        try:
            port = self.service.serve(self._host, self._port, self._discovery)
        except OSError as exc:
            raise ConfigError(f"query.port: cannot listen on {self._host}:{self._port}: {exc.strerror}") from exc
        log.info("queries on http://%s:%d/v1/query (read-only snapshots)", self._host, port)

    def stop(self) -> None:
        """Stop listening and release the query cursors."""
        self.service.stop()


class MetricsEndpoint:
    """The Prometheus endpoint as a service."""

    name = "metrics"

    def __init__(self, metrics: DaemonMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self._host, self._port = host, port

    def start(self) -> None:
        """Listen (a port that cannot be bound is a ConfigError naming ``daemon.metrics_port``)."""
        try:
            port = self.metrics.serve(self._host, self._port)
        except OSError as exc:
            raise ConfigError(
                f"daemon.metrics_port: cannot listen on {self._host}:{self._port}: {exc.strerror}"
            ) from exc
        log.info("metrics on http://%s:%d/metrics", self._host, port)

    def stop(self) -> None:
        """Stop listening."""
        self.metrics.shutdown()
