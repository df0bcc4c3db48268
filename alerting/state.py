"""The alert lifecycle's frames: the state (the ``alert_state`` table's shape) and the transitions.

``STATE_SCHEMA`` is ``storage.tables.ALERT_STATE.polars_schema``: the table is declared once, there. Pure
functions, no I/O: ``alerting.tables`` reads and writes the table with ``STATE_SELECT``, ``state_from_rows``
and ``state_rows``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from alerting.evaluate import UTC_US
from storage.tables import ALERT_STATE

Row = dict[str, Any]
"""One row of a lifecycle frame, by column name."""

STATE_SCHEMA: dict[str, pl.DataType] = ALERT_STATE.polars_schema
"""One row per live alert (``storage.tables.ALERT_STATE`` documents the columns)."""

STATE_SELECT = ALERT_STATE.select_sql()
"""Reads the table's rows in ``STATE_SCHEMA`` order, for ``state_from_rows``."""

TRANSITION_SCHEMA: dict[str, pl.DataType] = {
    "fingerprint": pl.String(),
    "rule": pl.String(),
    "status": pl.String(),
    "severity": pl.String(),
    "labels": pl.String(),
    "group": pl.String(),
    "summary": pl.String(),
    "annotations": pl.String(),
    "value": pl.Float64(),
    "started_at": UTC_US,
    "event_at": UTC_US,
    "learned_at": UTC_US,
    "playback": pl.Boolean(),
    "ends_at": UTC_US,
    "notified": pl.Boolean(),
    "acked_until": UTC_US,
    "shelved_until": UTC_US,
}
"""A change to notify. ``status``: firing|updated|resolved; ``started_at``: the alert's start (startsAt);
``ends_at``: the resolving window (resolved only); ``notified``, ``acked_until``, ``shelved_until``: the
alert's, for ``alerting.suppression.suppressed``."""


def require_aware(name: str, value: datetime) -> None:
    """``ValueError`` unless ``value`` (the argument ``name``) is timezone-aware."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")


def conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType], what: str) -> pl.DataFrame:
    """``frame``'s columns of ``schema``, in order and cast to it; ``ValueError`` naming missing columns."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")
    return frame.select(list(schema)).cast(pl.Schema(schema))


def rows_frame(rows: Iterable[Row], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """A frame of ``schema`` from rows by column name (extra keys are ignored)."""
    return pl.DataFrame([tuple(row[name] for name in schema) for row in rows], schema=dict(schema), orient="row")


def state_rows(state: pl.DataFrame) -> list[tuple[Any, ...]]:
    """The state's rows as tuples in the table's column order, for ``executemany`` of an INSERT."""
    return conform(state, STATE_SCHEMA, "state").rows()


def state_from_rows(rows: Iterable[Sequence[Any]]) -> pl.DataFrame:
    """The state (``STATE_SCHEMA``) from rows in the table's column order, e.g. ``STATE_SELECT``'s.

    Aware datetimes in any time zone (DuckDB gives TIMESTAMPTZ in the session's) are converted to UTC.
    """
    frame = pl.DataFrame([tuple(row) for row in rows], schema=STATE_SCHEMA, orient="row")
    return frame.sort("rule", "fingerprint")
