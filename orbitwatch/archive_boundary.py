"""Where the live days end: frames sampled before the boundary belong to days archived or due.

The boundary is ``raw_days`` whole days before the day of the newest frame, counted from the progress of
every assigned partition: a partition that is behind (consumer lag, one rack's playback backlog) holds it
at the newest frame that partition delivered, so retention waits for it instead of archiving the days it
is still catching up on. It never falls below the days already archived. The daemon fences retention with
it (``RetentionJob.raw_fence``) and hands it to the writer, which stores frames below it without
recomputing their minutes (``storage.writer``): whatever the boundary, no frame is rejected for its age.

A partition counts as behind when the broker reports lag for it (``KafkaSource.lag``, every 10 s). A
broker that reports no end offsets (Tansu reports 1) makes every partition look caught up: the boundary
then counts from the newest frame of any partition, and late frames take the writer's archived-day path.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import polars as pl

from orbitwatch.retention_worker import raw_boundary


class ArchiveBoundary:
    """The boundary of the live days, from each partition's progress (see the module docstring)."""

    def __init__(self, newest: datetime | None, raw_days: int | None, archived_before: datetime | None) -> None:
        self._newest = newest  # of any partition, this run or stored before it
        self._raw_days = raw_days  # None: retention off
        self._archived_before = archived_before
        self._by_partition: dict[int, datetime] = {}
        self._behind: frozenset[int] = frozenset()
        self.value = self._compute()

    def observe(self, rack_rows: pl.DataFrame) -> None:
        """Account a prepared batch's frames (``kafka_partition``, ``sampled_at``)."""
        if rack_rows.is_empty():
            return
        newest = rack_rows.group_by("kafka_partition").agg(pl.col("sampled_at").max())
        for partition, sampled_at in newest.iter_rows():
            if isinstance(sampled_at, datetime):
                known = self._by_partition.get(partition)
                self._by_partition[partition] = sampled_at if known is None else max(known, sampled_at)
                if self._newest is None or sampled_at > self._newest:
                    self._newest = sampled_at
        self.value = self._compute()

    def lag(self, lag: Mapping[int, int]) -> None:
        """The consumer lag per assigned partition, as the broker reports it."""
        self._behind = frozenset(p for p, behind in lag.items() if behind > 0)
        self.value = self._compute()

    def progress(self) -> datetime | None:
        """The newest frame time every partition that is behind has reached (or the newest of any)."""
        held = [self._by_partition[p] for p in self._behind if p in self._by_partition]
        if self._newest is None:
            return None
        return min([self._newest, *held])

    def _compute(self) -> datetime | None:
        return raw_boundary(self.progress(), self._raw_days, self._archived_before)
