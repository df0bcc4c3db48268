"""Retention inside the daemon: a background thread that moves old days to the Parquet archive.

It runs ``storage.retention.RetentionJob`` on its own cursor every ``retention.interval_s`` (and once soon
after start), concurrently with the writer: each table-day moves in its own transaction, and the daemon's
fence (``RetentionJob.raw_fence``) keeps it away from days whose minutes a batch in flight may rewrite.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import duckdb

from storage.errors import StorageError
from storage.retention import RetentionJob, RetentionReport, raw_cutoff

log = logging.getLogger(__name__)
FIRST_RUN_DELAY_S = 5.0


class RetentionWorker:
    """Runs the retention job periodically on a daemon thread; ``stop`` interrupts and joins it."""

    name = "retention"

    def __init__(self, job: RetentionJob, cursor: duckdb.DuckDBPyConnection, interval_s: float) -> None:
        self.job = job
        self._cursor = cursor
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self.last: RetentionReport | None = None

    def start(self) -> None:
        """Start the thread (first run after a few seconds, then every interval)."""
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the table-day in hand (interrupted if it takes longer than ``timeout_s``).

        A worker whose thread never started has nothing to stop.
        """
        self._stop.set()
        if self._thread.ident is None:
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._cursor.interrupt()  # the transaction rolls back: the day stays live, retried next start
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        wait = min(FIRST_RUN_DELAY_S, self._interval_s)
        while not self._stop.wait(wait):
            wait = self._interval_s
            try:
                self.last = report = self.job.run_once()
            except (StorageError, duckdb.Error, OSError) as exc:
                log.error("retention run failed (nothing lost; retried in %.0f s): %s", self._interval_s, exc)
                continue
            if report.parts:  # each part and each deferred day is logged by the job itself
                log.info("retention: %d table-days, %d rows moved to the archive", len(report.parts), report.rows)


def raw_boundary(newest: datetime | None, raw_days: int | None, archived_before: datetime | None) -> datetime | None:
    """Frames sampled before this are not stored: their day is archived or due (None: no boundary).

    ``newest`` is the newest sample time the daemon knows, ``raw_days`` None when retention is off, and
    ``archived_before`` the archive's own boundary (days archived earlier, maybe with a longer retention).
    """
    due = raw_cutoff(newest, raw_days) if newest is not None and raw_days is not None else None
    candidates = [b for b in (due, archived_before) if b is not None]
    return max(candidates) if candidates else None
