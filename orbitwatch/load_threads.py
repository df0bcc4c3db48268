"""DuckDB's worker threads follow the daemon's load: one while it ingests, every core while it is idle.

Why: while the daemon ingests, its own threads (decode and derive on the main thread, inserts on the
writer thread) need the cores, and a second DuckDB thread only contends with them: on a backlog 450k
samples/s with DuckDB's default against 480k with one thread (``orbitwatch.daemon_parts.load_threads``),
and with the live fleet streaming in (62.5k samples/s) every saved query got slower with two threads
(p50 hottest-racks 51 ms against 32, rising-ecc 347 against 257, tenant-usage 119 against 87; one run of
``tests.bench.query_latency`` against the medians of 3 before). Idle, a query on one thread leaves the
other core unused (rising-ecc 124 ms p50 with two, 149 with one, in the same bench's first run).

Decision: DuckDB's default (all cores, ``spare``) until a poll brings messages, one thread (``busy``) from
then on, and all cores again after ``settle_s`` of polls that brought nothing. ``SET threads`` is
database-wide; DuckDB relaunches its workers between tasks, so queries running meanwhile go on (tested).
Only the default (``storage.threads`` unset, processing on) adapts; a configured ``storage.threads`` is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import duckdb

log = logging.getLogger(__name__)
SETTLE_S = 5.0


class LoadThreads:
    """Sets DuckDB's ``threads`` from the polls the daemon observes (``observe`` after each poll)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        busy: int = 1,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``con``'s threads as opened are the ``spare`` ones; its own cursor is made now, before other threads
        use the connection."""
        self._cursor = con.cursor()
        (row,) = self._cursor.execute("SELECT current_setting('threads')").fetchall()
        self._spare = int(row[0])
        self._busy = min(busy, self._spare)
        self._settle_s = settle_s
        self._clock = clock
        self.threads = self._spare
        self._idle_since: float | None = None

    def observe(self, messages: int) -> None:
        """A poll's outcome: ``messages`` drop to ``busy`` threads at once; polls that brought nothing for
        ``settle_s`` raise them to ``spare``."""
        if messages:
            self._idle_since = None
            self._set(self._busy, "ingesting")
            return
        now = self._clock()
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self._settle_s:
            self._set(self._spare, f"idle for {self._settle_s:g} s")

    def close(self) -> None:
        """Close the cursor (the connection stays open)."""
        self._cursor.close()

    def _set(self, threads: int, why: str) -> None:
        if threads == self.threads:
            return
        self._cursor.execute(f"SET threads = {int(threads)}")
        log.info("DuckDB on %d thread%s: %s", threads, "" if threads == 1 else "s", why)
        self.threads = threads
