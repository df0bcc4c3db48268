"""The dead-letter limit: a ratio over a window of messages, and a run of consecutive dead letters."""

from __future__ import annotations

import pytest

from orbitwatch.dlq_limit import DeadLetterLimit
from orbitwatch.errors import DeadLetterLimitExceeded


def test_a_few_dead_letters_pass() -> None:
    limit = DeadLetterLimit(max_ratio=0.5, window=100, max_consecutive=10)
    for _ in range(20):
        limit.check([True] + [False] * 9)


def test_ratio_over_the_window_stops_with_the_figures() -> None:
    limit = DeadLetterLimit(max_ratio=0.5, window=100, max_consecutive=1_000)
    limit.check([True, False] * 30)  # 30 of 60: below the window size, not judged yet
    with pytest.raises(DeadLetterLimitExceeded, match=r"of the last \d+ messages were dead-lettered"):
        limit.check([True] * 30 + [False] * 10)  # 60 of 100


def test_a_small_sample_is_not_judged() -> None:
    limit = DeadLetterLimit(max_ratio=0.1, window=1_000, max_consecutive=1_000)
    limit.check([True] * 50)  # 100% of 50 messages, but the window needs 1,000


def test_old_batches_leave_the_window() -> None:
    limit = DeadLetterLimit(max_ratio=0.5, window=100, max_consecutive=1_000)
    limit.check([True] * 40 + [False] * 60)  # 40% of 100
    for _ in range(5):
        limit.check([False] * 100)  # the bad batch slides out
    limit.check([True] * 45 + [False] * 55)  # 45% of the last 100: fine


def test_consecutive_dead_letters_across_batches() -> None:
    limit = DeadLetterLimit(max_ratio=1.0, window=10_000, max_consecutive=5)
    limit.check([False, True, True, True])
    with pytest.raises(DeadLetterLimitExceeded, match="6 consecutive messages"):
        limit.check([True, True, True, False])


def test_a_refused_batch_does_not_count() -> None:
    limit = DeadLetterLimit(max_ratio=0.5, window=10, max_consecutive=3)
    with pytest.raises(DeadLetterLimitExceeded):
        limit.check([True] * 4)
    limit.check([True, True, False] * 3)  # the refused batch left no trace in the run length or the window
