"""The daemon's periodic log line: what was stored, how fast, what was dropped."""

from __future__ import annotations

import logging
import time

from storage.writer import StoredBatch

log = logging.getLogger("orbitwatch.daemon")


class Reporter:
    """Logs what happened every 10 seconds: frames, samples/s, duplicates, dead letters."""

    def __init__(self, every_s: float = 10.0) -> None:
        self._every_s = every_s
        self._since = time.monotonic()
        self._messages = self._frames = self._samples = self._duplicates = self._dead = 0

    def add(self, messages: int, stored: StoredBatch) -> None:
        """Account one committed batch; logs when the period is over."""
        self._messages += messages
        self._frames += stored.frames_stored
        self._samples += stored.samples_stored
        self._duplicates += stored.duplicates_dropped
        self._dead += stored.dead_letters
        if time.monotonic() - self._since >= self._every_s:
            self.flush()

    def flush(self) -> None:
        """Log what was accounted since the last line, and start a new period."""
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
