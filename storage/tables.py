"""The declarations of the history's tables whose shape code reads and writes (``storage.table``).

Each is the table's current shape, declared once: ``alerting`` and ``storage`` take their polars schemas
from here (``ALERT_STATE.polars_schema`` is the alert lifecycle's state), and the tables of per-rack state
whose frames ``processing`` computes are declared from its schemas (``processing`` imports nothing of
``storage``). The migrations of ``storage.schema`` keep their own frozen DDL (why: ``storage.table``);
``tests/test_table_declarations.py`` checks each declaration against a freshly migrated database.
"""

from __future__ import annotations

import polars as pl

from processing.gaps import BOUNDS_SCHEMA, GAP_SCHEMA
from processing.passes import LINK_SCHEMA
from processing.rollups import GPU_METRICS, RACK_READINGS, THROTTLE_REASONS
from processing.windows import TENANT_SCHEMA
from storage.table import Column, Table

_S = pl.String()
_B = pl.Boolean()
_I32 = pl.Int32()
_I64 = pl.Int64()
_F64 = pl.Float64()
_UTC = pl.Datetime("us", "UTC")

# ---- Alerting (migrations 3 and 7) ---------------------------------------------------------------------

ALERT_STATE = Table(
    "alert_state",
    (
        Column("fingerprint", _S),
        Column("rule", _S),
        Column("status", _S, check="status IN ('pending', 'firing')"),
        Column("severity", _S, check="severity IN ('info', 'warning', 'critical')"),
        Column("labels", _S),
        Column("group", _S),
        Column("summary", _S),
        Column("annotations", _S),
        Column("value", _F64, nullable=True),
        Column("started_at", _UTC),
        Column("fired_at", _UTC, nullable=True),
        Column("last_held_at", _UTC),
        Column("last_info_at", _UTC, nullable=True),
        Column("last_warning_at", _UTC, nullable=True),
        Column("last_critical_at", _UTC, nullable=True),
        Column("event_at", _UTC, nullable=True),
        Column("learned_at", _UTC, nullable=True),
        Column("playback", _B, nullable=True),
        Column("notified", _B),
        Column("acked_until", _UTC, nullable=True),
        Column("shelved_until", _UTC, nullable=True),
    ),
    primary_key=("fingerprint",),
)
"""One row per live alert (``alerting.state``). ``status``: pending|firing; ``started_at``: event time the run
began; ``fired_at`` (= ``event_at``), ``learned_at`` (the ``as_of`` it fired at), ``playback``: null while
pending; ``last_held_at``: newest held window; ``last_<severity>_at``: newest held window at that severity
(damped de-escalation); ``notified``: its firing reached receivers; ``acked_until``, ``shelved_until``: null
unless set. Labels, group and annotations are JSON objects."""

ALERT_OUTBOX = Table(
    "alert_outbox",
    (
        Column("id", _I64, default="nextval('alert_outbox_id')"),
        Column("hook", _S),
        Column("group_key", _S),
        Column("status", _S, check="status IN ('firing', 'resolved')"),
        Column("fingerprints", pl.List(_S)),
        Column("body", pl.Binary()),
        Column("created_at", _UTC),
        Column("state", _S, check="state IN ('pending', 'delivered', 'failed')"),
        Column("attempts", _I32, check="attempts >= 0"),
        Column("next_attempt_at", _UTC, nullable=True),
        Column("delivered_at", _UTC, nullable=True),
        Column("last_error", _S, nullable=True),
    ),
    primary_key=("id",),
    sequences=("alert_outbox_id",),
)
"""Notifications waiting for, or done with, delivery (``alerting.outbox``). No secondary index on purpose: an
indexed column is updated as a delete plus an insert, and the worker updates ``state`` often."""

ALERT_AUDIT = Table(
    "alert_audit",
    (
        Column("requested_at", _UTC),
        Column("requested_by", _S),
        Column("via", _S),
        Column("action", _S),
        Column("target", _S),
        Column("until", _UTC, nullable=True),
        Column("outcome", _S, check="outcome IN ('applied', 'rejected')"),
        Column("fingerprints", pl.List(_S)),
        Column("reason", _S, nullable=True),
        Column("applied_at", _UTC),
    ),
)
"""One row per operator's alert command, applied or rejected (``alerting.audit``)."""

# ---- Per-rack state whose frames ``processing`` computes (migration 2) -------------------------------

TENANT_MINUTES = Table.from_polars("tenant_minutes", TENANT_SCHEMA)
"""GPU-seconds per rack, minute and tenant (``processing.windows.TENANT_SCHEMA``)."""
SEQ_BOUNDS = Table.from_polars("seq_bounds", BOUNDS_SCHEMA)
"""The lowest and highest frame sequence stored per rack and boot epoch (``processing.gaps``)."""
OPEN_GAPS = Table.from_polars("open_gaps", GAP_SCHEMA, extra=(Column("detected_at", _UTC),))
"""Sequence gaps not filled yet (``processing.gaps.GAP_SCHEMA``), with when each was first seen."""
RACK_LINK = Table.from_polars(
    "rack_link",
    LINK_SCHEMA,
    nullable=("last_frame_at", "last_sampled_at", "last_live_at", "expected_frame_interval_s"),
)
"""Each rack's link state: last frames and recent ground passes (``processing.passes.LINK_SCHEMA``)."""

# ---- Windows (migration 2) -----------------------------------------------------------------------------

_GPU_METRIC_COLUMNS = tuple(
    column
    for metric in GPU_METRICS
    for column in (
        Column(f"{metric}_mean", _F64, nullable=True),
        Column(f"{metric}_max", _F64, nullable=True),
        Column(f"{metric}_readings", _I64),
    )
)
"""Mean, maximum and count of readings of each GPU metric (``processing.rollups.GPU_METRICS``), in its order."""

_THROTTLE_COLUMNS = tuple(Column(f"throttled_s_{reason}", _I64) for reason in THROTTLE_REASONS)
"""Seconds throttled per DCGM reason (``processing.rollups.THROTTLE_REASONS``)."""

_RACK_READING_COLUMNS = tuple(
    column
    for reading in RACK_READINGS
    for column in (Column(f"{reading}_mean", _F64, nullable=True), Column(f"{reading}_max", _F64, nullable=True))
)
"""Mean and maximum of each rack reading (``processing.rollups.RACK_READINGS``)."""

GPU_WINDOWS_1M = Table(
    "gpu_windows_1m",
    (
        Column("rack_id", _S),
        Column("node", _I32),
        Column("gpu", _I32),
        Column("window_start", _UTC),
        Column("samples", _I64),
        Column("expected_s", _I64),
        Column("coverage", _F64),
        *_GPU_METRIC_COLUMNS,
        Column("util_mean_covered", _F64, nullable=True),
        Column("ecc_sbe_inc", _I64, nullable=True),
        Column("ecc_dbe_inc", _I64, nullable=True),
        Column("nvlink_inc", _I64, nullable=True),
        Column("xid_count", _I64),
        Column("xids", pl.List(_I32)),
        *_THROTTLE_COLUMNS,
        Column("row_remap_pending", _B),
        Column("busy_s", _I64),
        Column("last_epoch", _I32),
        Column("last_seq", _I64),
        Column("ecc_sbe_last", _I64, nullable=True),
        Column("ecc_dbe_last", _I64, nullable=True),
        Column("nvlink_errors_last", _I64, nullable=True),
        Column("state", _S),
        Column("reasons", pl.List(_S)),
        Column("computed_at", _UTC),
    ),
)
"""Per GPU and minute: samples, coverage, means and maxima, counter increments, health (``storage.derived``)."""

RACK_WINDOWS_1M = Table(
    "rack_windows_1m",
    (
        Column("rack_id", _S),
        Column("window_start", _UTC),
        Column("frames", _I64),
        Column("expected_s", _I64),
        Column("coverage", _F64),
        Column("gpus", _I64),
        Column("gpu_samples", _I64),
        *_GPU_METRIC_COLUMNS,
        Column("util_mean_covered", _F64, nullable=True),
        Column("ecc_sbe_inc", _I64),
        Column("ecc_dbe_inc", _I64),
        Column("nvlink_inc", _I64),
        Column("xid_count", _I64),
        *_THROTTLE_COLUMNS,
        Column("busy_s", _I64),
        Column("row_remap_pending_gpus", _I64),
        Column("seu_inc", _I64, nullable=True),
        *_RACK_READING_COLUMNS,
        Column("battery_soc_min", _F64, nullable=True),
        Column("in_eclipse_fraction", _F64, nullable=True),
        Column("last_frame_at", _UTC, nullable=True),
        Column("last_epoch", _I32),
        Column("last_seq", _I64),
        Column("seu_count_last", _I64, nullable=True),
        Column("gpu_state", _S),
        Column("gpu_reasons", pl.List(_S)),
        Column("state", _S),
        Column("reasons", pl.List(_S)),
        Column("computed_at", _UTC),
    ),
)
"""Per rack and minute: the GPU windows rolled up, the bus and thermal readings, health (``storage.derived``)."""


def _gpu_ecc_columns(bucket: str) -> tuple[Column, ...]:
    """The columns of a GPU ECC rollup whose buckets start at ``bucket`` (``storage.ecc_hours``)."""
    return (
        Column("rack_id", _S),
        Column("node", _I32),
        Column("gpu", _I32),
        Column(bucket, _UTC),
        Column("minutes", _I64),
        Column("samples", _I64),
        Column("ecc_sbe_inc", _I64),
        Column("ecc_sbe_minutes", _I64),
        Column("ecc_dbe_inc", _I64),
        Column("ecc_dbe_minutes", _I64),
        Column("last_minute", _UTC, nullable=True),
    )


GPU_ECC_HOURS = Table("gpu_ecc_hours", _gpu_ecc_columns("hour"))
"""Additive rows per GPU and hour of ``gpu_windows_1m`` (``storage.ecc_hours``): GPU-minute windows, samples,
the ECC increments' sums (nulls as 0) and the minutes with a non-null increment, the newest minute."""

GPU_ECC_SLICES = Table("gpu_ecc_slices", _gpu_ecc_columns("slice"))
"""``gpu_ecc_hours``'s sums per GPU and 10-minute slice of the last two hours rolled (``storage.ecc_hours``):
what ``rising-ecc`` reads for the open hour instead of its GPU-minute windows."""

TENANT_HOURS = Table(
    "tenant_hours",
    (
        Column("tenant", _S),
        Column("rack_id", _S),
        Column("hour", _UTC),
        Column("minutes", _I64),
        Column("gpu_seconds", _I64),
    ),
)
"""Additive rows per tenant, rack and hour of ``tenant_minutes`` (``storage.tenant_hours``): its minutes and
GPU-seconds."""

ROLLUP_MARKS = Table(
    "rollup_marks",
    (Column("name", _S), Column("covered_from", _UTC, nullable=True), Column("complete_before", _UTC, nullable=True)),
    primary_key=("name",),
)
"""Per rolled-up table, the buckets ``[covered_from, complete_before)`` it covers, NULL before its first roll
(``storage.hourly``); every history has the row, so the shards' union tells a shard that covers nothing."""

DECLARED: tuple[Table, ...] = (
    ALERT_STATE,
    ALERT_OUTBOX,
    ALERT_AUDIT,
    TENANT_MINUTES,
    SEQ_BOUNDS,
    OPEN_GAPS,
    RACK_LINK,
    GPU_WINDOWS_1M,
    RACK_WINDOWS_1M,
    GPU_ECC_HOURS,
    GPU_ECC_SLICES,
    TENANT_HOURS,
    ROLLUP_MARKS,
)
"""Every declared table (the declaration test walks them)."""
