"""Whether the Kafka broker answers: one log line when it stops answering, one when it is back.

kafka-python retries on its own and logs every failed connection attempt; what an operator needs is the
outage as one event. The source reports each call's outcome here (a poll that returned messages, an
offset commit, the end-offset probe); the first failure after a success is the start of an outage, the
first success after failures its end, logged with its length.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """The broker's state as last observed: reachable or not, since when, and the outage so far."""

    reachable: bool
    since: datetime | None
    """Wall-clock time of the last change (None: no change observed yet)."""
    outage_s: float | None
    """While unreachable, the seconds since the outage began; after one, the length of the last."""
    outages: int


class BrokerState:
    """Turns per-call outcomes into outage start and end events (thread-safe: kafka-python's IO thread
    commits offsets on revocation while the main thread polls)."""

    def __init__(self, servers: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._servers = servers
        self._clock = clock
        self._lock = threading.Lock()
        self._reachable = True
        self._changed_at: float | None = None
        self._since: datetime | None = None
        self._last_outage_s: float | None = None
        self.outages = 0

    @property
    def reachable(self) -> bool:
        """False from the first failure after a success until the next success."""
        return self._reachable

    def succeeded(self) -> None:
        """A call the broker answered: ends an outage (logged with its length)."""
        with self._lock:
            if self._reachable:
                return
            now = self._clock()
            self._last_outage_s = now - self._changed_at if self._changed_at is not None else None
            self._reachable, self._changed_at, self._since = True, now, datetime.now(UTC)
        log.info(
            "Kafka broker reachable again at %s after a %.0f s outage; resuming",
            self._servers,
            self._last_outage_s or 0.0,
        )

    def failed(self, what: str, error: object) -> None:
        """A call the broker did not answer in time (or refused): starts an outage (logged once)."""
        with self._lock:
            if not self._reachable:
                return
            self._reachable, self._changed_at, self._since = False, self._clock(), datetime.now(UTC)
            self.outages += 1
        log.warning(
            "Kafka broker unreachable at %s (%s: %s); waiting for it, nothing is lost (DuckDB holds the offsets)",
            self._servers,
            what,
            error,
        )

    def status(self) -> BrokerStatus:
        """A snapshot for the status endpoint and the metrics."""
        with self._lock:
            outage = self._last_outage_s
            if not self._reachable and self._changed_at is not None:
                outage = self._clock() - self._changed_at
            return BrokerStatus(self._reachable, self._since, outage, self.outages)


class QuietDuringOutage(logging.Filter):
    """A handler filter: during an outage, kafka-python's own records (a connection error every few
    hundred milliseconds) pass at most once every ``every_s``; the outage's two lines say the rest."""

    def __init__(self, state: BrokerState, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._state, self._every_s, self._clock = state, every_s, clock
        self._last_passed = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a kafka-python record during an outage, unless none passed for ``every_s``."""
        if self._state.reachable or not record.name.startswith("kafka"):
            return True
        now = self._clock()
        if now - self._last_passed < self._every_s:
            return False
        self._last_passed = now
        return True
