"""DuckDB's worker threads follow the daemon's load: one while it catches up on a backlog, every core once
it keeps up with the fleet.

Why: while the daemon catches up, its own threads (decode and derive on the main thread, inserts on the
writer thread) keep both cores busy, and a second DuckDB thread only contends with them (450k samples/s
with DuckDB's default against 480k with one thread, ``orbitwatch.daemon_parts.load_threads``). Once it
keeps up, it leaves most of a core idle, and an operator's query on one DuckDB thread cannot use it.

Decision: DuckDB's default (all cores, ``spare``) until a batch is full, one thread (``busy``) from then on,
and all cores again after ``settle_s`` of batches that were not full, so that a backlog's short pauses do
not flap it. A daemon restarted on a backlog drops to one thread with its first batch. ``SET threads`` is
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
    """Sets DuckDB's ``threads`` from the batches the daemon observes (``observe`` after each poll)."""

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
        self._calm_since: float | None = None

    def observe(self, backlogged: bool) -> None:
        """A poll's outcome: ``backlogged`` (the batch was full) drops to ``busy`` threads at once; batches
        that were not full for ``settle_s`` raise them to ``spare``."""
        if backlogged:
            self._calm_since = None
            self._set(self._busy, "catching up on a backlog")
            return
        now = self._clock()
        if self._calm_since is None:
            self._calm_since = now
        elif now - self._calm_since >= self._settle_s:
            self._set(self._spare, f"kept up for {self._settle_s:g} s")

    def close(self) -> None:
        """Close the cursor (the connection stays open)."""
        self._cursor.close()

    def _set(self, threads: int, why: str) -> None:
        if threads == self.threads:
            return
        self._cursor.execute(f"SET threads = {int(threads)}")
        log.info("DuckDB on %d thread%s: %s", threads, "" if threads == 1 else "s", why)
        self.threads = threads
