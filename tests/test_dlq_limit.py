"""The dead-letter limit: a ratio over a window of messages, and a run of consecutive dead letters."""

from __future__ import annotations

import pytest

from orbitwatch.dlq_limit import DeadLetterLimit
from orbitwatch.errors import DeadLetterLimitExceeded

BAD = "unknown schema id 99"


def test_a_few_dead_letters_pass() -> None:
    limit = DeadLetterLimit(max_ratio=0.5, window=100, max_consecutive=10)
    for _ in range(20):
        limit.check([BAD] + [None] * 9)


def test_ratio_over_the_window_stops_with_the_figures() -> None:
    limit = DeadLetterLimit(max_ratio=0.5, window=100, max_consecutive=1_000)
    limit.check([BAD, None] * 30)  # 30 of 60: below the window size, not judged yet
    with pytest.raises(DeadLetterLimitExceeded, match=r"of the last \d+ messages were dead-lettered"):
        limit.check([BAD] * 30 + [None] * 10)  # 60 of 100


def test_a_small_sample_is_not_judged() -> None:
    limit = DeadLetterLimit(max_ratio=0.1, window=1_000, max_consecutive=1_000)
    limit.check([BAD] * 50)  # 100% of 50 messages, but the window needs 1,000


def test_old_batches_leave_the_window() -> None:
    limit = DeadLetterLimit(max_ratio=0.5, window=100, max_consecutive=1_000)
    limit.check([BAD] * 40 + [None] * 60)  # 40% of 100
    for _ in range(5):
        limit.check([None] * 100)  # the bad batch slides out
    limit.check([BAD] * 45 + [None] * 55)  # 45% of the last 100: fine


def test_consecutive_dead_letters_across_batches() -> None:
    limit = DeadLetterLimit(max_ratio=1.0, window=10_000, max_consecutive=5)
    limit.check([None, BAD, BAD, BAD])
    with pytest.raises(DeadLetterLimitExceeded, match="6 consecutive messages"):
        limit.check([BAD, BAD, BAD, None])


def test_a_refused_batch_does_not_count() -> None:
    limit = DeadLetterLimit(max_ratio=0.5, window=10, max_consecutive=3)
    with pytest.raises(DeadLetterLimitExceeded):
        limit.check([BAD] * 4)
    limit.check([BAD, BAD, None] * 3)  # the refused batch left no trace in the run length or the window


def test_the_stop_message_names_the_commonest_reasons_it_counted() -> None:
    limit = DeadLetterLimit(max_ratio=1.0, window=10_000, max_consecutive=5)
    old = "sampled before 2026-11-02T00:00:00+00:00"
    with pytest.raises(DeadLetterLimitExceeded) as stopped:
        limit.check([BAD, old, old, old, BAD, old])
    assert str(stopped.value).startswith(
        f"6 consecutive messages were dead-lettered (limit 5): 4 x {old!r}, 2 x {BAD!r}."
    )
    ratio = DeadLetterLimit(max_ratio=0.5, window=10, max_consecutive=1_000)
    reasons = ["a", "b", "c", "d", "d", "d", None, None, None, None]
    with pytest.raises(
        DeadLetterLimitExceeded, match=r"6 of the last 10 .*: 3 x 'd', 1 x 'a', 1 x 'b' and 1 with other"
    ):
        ratio.check(reasons)
