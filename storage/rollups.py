"""The rollups a history keeps (``storage.hourly``), by the minute table they sum."""

from __future__ import annotations

import duckdb

from storage.ecc_hours import ECC_HOURS, ECC_SLICES
from storage.hourly import BucketRollup, Rollup
from storage.tenant_hours import TENANT_HOURS_ROLLUP

ROLLUPS: tuple[Rollup, ...] = (ECC_HOURS, ECC_SLICES, TENANT_HOURS_ROLLUP)


def open_rollups(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[BucketRollup, ...]]:
    """Each rollup on the writer's connection, grouped by its source table."""
    return {
        source: tuple(BucketRollup(con, rollup) for rollup in ROLLUPS if rollup.source == source)
        for source in dict.fromkeys(rollup.source for rollup in ROLLUPS)
    }
