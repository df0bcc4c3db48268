"""A guard against dead-lettering everything after a bad deploy (after arroyo's ``DlqLimit``).

The daemon asks the guard *before* storing a batch; past the limit the batch is not stored and not
committed, the daemon stops, and after the cause is fixed a restart processes the same messages again.
"""

from __future__ import annotations

from collections import deque

from orbitwatch.errors import DeadLetterLimitExceeded


class DeadLetterLimit:
    """Stops on a dead-letter ratio over the last ``window`` messages or a run of consecutive ones."""

    def __init__(self, max_ratio: float, window: int, max_consecutive: int) -> None:
        self._max_ratio = max_ratio
        self._window = window
        self._max_consecutive = max_consecutive
        self._recent: deque[tuple[int, int]] = deque()
        self._consecutive = 0

    def check(self, dead_flags: list[bool]) -> None:
        """Account one batch (True = dead letter, in stream order); raise past the limit."""
        consecutive = self._consecutive
        for dead in dead_flags:
            consecutive = consecutive + 1 if dead else 0
            if consecutive > self._max_consecutive:
                raise DeadLetterLimitExceeded(
                    f"{consecutive} consecutive messages could not be decoded (limit {self._max_consecutive}); "
                    "is a producer sending a new format? The batch was not stored; fix the cause and restart."
                )
        recent = [*self._recent, (len(dead_flags), sum(dead_flags))]
        while len(recent) > 1 and sum(n for n, _ in recent[1:]) >= self._window:
            recent.pop(0)
        seen = sum(n for n, _ in recent)
        dead_total = sum(d for _, d in recent)
        if seen >= self._window and dead_total > self._max_ratio * seen:
            raise DeadLetterLimitExceeded(
                f"{dead_total} of the last {seen} messages were dead-lettered "
                f"(ratio {dead_total / seen:.2f} > limit {self._max_ratio}); the batch was not stored; "
                "fix the cause (see the dead_letters table for reasons) and restart."
            )
        self._recent = deque(recent)
        self._consecutive = consecutive
