"""A guard against dead-lettering everything after a bad deploy (after arroyo's ``DlqLimit``).

The daemon asks the guard *before* storing a batch; past the limit the batch is not stored and not
committed, the daemon stops, and after the cause is fixed a restart processes the same messages again.
"""

from __future__ import annotations

from collections import Counter, deque

from orbitwatch.errors import DeadLetterLimitExceeded

_REASONS_NAMED = 3


class DeadLetterLimit:
    """Stops on a dead-letter ratio over the last ``window`` messages or a run of consecutive ones.

    The stop message names the commonest reasons among the dead letters it counted, so an operator sees
    at once whether a producer changed format, the link corrupts frames, or something else.
    """

    def __init__(self, max_ratio: float, window: int, max_consecutive: int) -> None:
        self._max_ratio = max_ratio
        self._window = window
        self._max_consecutive = max_consecutive
        self._recent: deque[tuple[int, Counter[str]]] = deque()
        self._consecutive: Counter[str] = Counter()

    def check(self, reasons: list[str | None]) -> None:
        """Account one batch (per message in stream order: its dead-letter reason, or None); raise past
        the limit."""
        consecutive, run = Counter(self._consecutive), self._consecutive.total()
        for reason in reasons:
            if reason is None:
                if run:
                    consecutive, run = Counter(), 0
                continue
            consecutive[reason] += 1
            run += 1
            if run > self._max_consecutive:
                raise DeadLetterLimitExceeded(
                    f"{run} consecutive messages were dead-lettered (limit {self._max_consecutive}): "
                    f"{_commonest(consecutive)}. The batch was not stored; fix the cause and restart."
                )
        batch = Counter(r for r in reasons if r is not None)
        recent = [*self._recent, (len(reasons), batch)]
        while len(recent) > 1 and sum(n for n, _ in recent[1:]) >= self._window:
            recent.pop(0)
        seen = sum(n for n, _ in recent)
        dead: Counter[str] = sum((c for _, c in recent), Counter())
        if seen >= self._window and dead.total() > self._max_ratio * seen:
            raise DeadLetterLimitExceeded(
                f"{dead.total()} of the last {seen} messages were dead-lettered "
                f"(ratio {dead.total() / seen:.2f} > limit {self._max_ratio}): {_commonest(dead)}. "
                "The batch was not stored; fix the cause (the dead_letters table has every reason) and restart."
            )
        self._recent = deque(recent)
        self._consecutive = consecutive


def _commonest(reasons: Counter[str]) -> str:
    """The commonest reasons with their counts, e.g. ``498 x 'unknown schema id 99', 3 x '...'``."""
    named = [f"{n} x {reason!r}" for reason, n in reasons.most_common(_REASONS_NAMED)]
    others = reasons.total() - sum(n for _, n in reasons.most_common(_REASONS_NAMED))
    return ", ".join(named) + (f" and {others} with other reasons" if others else "")
