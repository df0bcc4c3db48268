"""The live days' boundary follows the progress of every partition: a lagging one holds it back."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from orbitwatch.archive_boundary import ArchiveBoundary


def rows(*frames: tuple[int, datetime]) -> pl.DataFrame:
    return pl.DataFrame(
        {"kafka_partition": [p for p, _ in frames], "sampled_at": [t for _, t in frames]},
        schema={"kafka_partition": pl.Int32, "sampled_at": pl.Datetime("us", "UTC")},
    )


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def midnight(day: int) -> datetime:
    return datetime(2026, 11, day, tzinfo=UTC)


def test_a_partition_behind_holds_the_boundary_at_its_own_progress() -> None:
    boundary = ArchiveBoundary(None, raw_days=1, archived_before=None)
    assert boundary.value is None  # an empty history has nothing to archive
    boundary.observe(rows((0, at(10)), (1, at(4))))
    assert boundary.value == midnight(9)  # nobody reported behind: counted from the newest frame
    boundary.lag({0: 0, 1: 5000})
    assert boundary.value == midnight(3)  # partition 1 is still reading day 4
    boundary.observe(rows((1, at(8))))
    assert boundary.value == midnight(7)
    boundary.lag({0: 0, 1: 0})  # caught up
    assert boundary.value == midnight(9)


def test_it_never_falls_below_the_days_already_archived_and_is_none_without_retention() -> None:
    boundary = ArchiveBoundary(at(10), raw_days=1, archived_before=midnight(8))
    boundary.observe(rows((2, at(2))))
    boundary.lag({2: 10})
    assert boundary.value == midnight(8)  # day 7 and before are archived whatever partition 2 reads
    off = ArchiveBoundary(at(10), raw_days=None, archived_before=None)
    off.observe(rows((0, at(11))))
    assert off.value is None


def test_a_partition_behind_that_delivered_nothing_yet_does_not_hold_it() -> None:
    boundary = ArchiveBoundary(at(10), raw_days=2, archived_before=None)
    boundary.lag({3: 100})  # its time is unknown until it delivers a frame
    assert boundary.value == midnight(8)
