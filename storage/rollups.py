"""The hourly rollups a history keeps (``storage.hourly``), by the minute table each sums."""

from __future__ import annotations

import duckdb

from storage.ecc_hours import ECC_HOURS
from storage.hourly import HourlyRollup, Rollup
from storage.tenant_hours import TENANT_HOURS_ROLLUP

ROLLUPS: tuple[Rollup, ...] = (ECC_HOURS, TENANT_HOURS_ROLLUP)


def open_rollups(con: duckdb.DuckDBPyConnection) -> dict[str, HourlyRollup]:
    """Each rollup on the writer's connection, keyed by its source table."""
    return {rollup.source: HourlyRollup(con, rollup) for rollup in ROLLUPS}
