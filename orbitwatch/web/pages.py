"""What each page shows: its SQL (run on every shard by ``sources.Fleet``) and the shaping of the rows.

Every statement reads the operator views and derived tables the daemon keeps in the batch's transaction,
never raw frames except for the playback marks of one rack: a page costs about what the same question asked
with ``orbitwatch query`` costs. Times are UTC. "Now" is the ground's clock (the newest ``as_of`` in
``fleet_health_now``), not the wall clock, so a history replayed or restored reads as it did live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from orbitwatch.query_client import Params
from orbitwatch.web.errors import SourceError
from orbitwatch.web.sources import Fleet
from processing.health import HealthThresholds

STATES = ("critical", "degraded", "unknown", "ok")
RANGES = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "6h"

FLEET_SQL = """
WITH h AS (SELECT * FROM fleet_health_now),
g AS (
    SELECT w.rack_id, count(*) AS gpus, count(*) FILTER (w.state = 'ok') AS gpus_healthy,
        count(*) FILTER (w.state = 'ok' AND w.busy_s = 0) AS gpus_available,
        avg(w.util_mean) AS util_mean, max(w.temp_max) AS temp_max
    FROM gpu_windows_1m w JOIN h ON w.rack_id = h.rack_id AND w.window_start = h.last_window_start
    WHERE w.window_start >= (SELECT min(last_window_start) FROM h)
    GROUP BY w.rack_id),
a AS (
    SELECT json_extract_string(labels, '$.rack_id') AS rack_id,
        count(*) FILTER (status = 'firing') AS alerts_firing, count(*) AS alerts_live
    FROM alert_state GROUP BY ALL)
SELECT h.rack_id, split_part(h.rack_id, '/', 1) AS satellite, h.as_of, h.state, h.reasons, h.last_known_state,
    h.last_frame_at, h.in_contact_expected, h.predicted_next_contact,
    g.gpus, g.gpus_healthy, g.gpus_available, g.util_mean, g.temp_max,
    coalesce(a.alerts_firing, 0) AS alerts_firing, coalesce(a.alerts_live, 0) AS alerts_live
FROM h LEFT JOIN g USING (rack_id) LEFT JOIN a USING (rack_id)
"""
"""One row per rack: its health now, GPUs of its newest window, live alerts. The satellite is the part of
``rack_id`` before ``/`` (as in the alert labels)."""

RACK_NOW_SQL = "SELECT * FROM fleet_health_now WHERE rack_id = $rack"
GPUS_SQL = """
SELECT node, gpu, temp_max, hbm_temp_max, util_mean, power_mean, state, reasons
FROM gpu_windows_1m
WHERE rack_id = $rack AND window_start = (SELECT last_window_start FROM rack_health_now WHERE rack_id = $rack)
ORDER BY node, gpu
"""
SERIES_SQL = """
SELECT window_start, frames, coverage, temp_max, temp_mean, hbm_temp_max, power_mean, util_mean,
    ecc_sbe_inc, ecc_dbe_inc, nvlink_inc, seu_inc, state, reasons
FROM rack_rollups_1m
WHERE rack_id = $rack AND window_start >= $start::TIMESTAMPTZ AND window_start < $end::TIMESTAMPTZ
ORDER BY window_start
"""
PLAYBACK_SQL = """
SELECT time_bucket(INTERVAL 1 minute, sampled_at) AS window_start, count(*) AS playback_frames
FROM rack_frames
WHERE rack_id = $rack AND stored AND sampled_at >= $start::TIMESTAMPTZ AND sampled_at < $end::TIMESTAMPTZ
GROUP BY ALL
"""
"""Minutes holding frames the rack stored on board and played back at a pass (``stored``), i.e. learned late."""
HEALTH_LOG_SQL = """
SELECT as_of, state, reasons, last_window_start FROM rack_health_log
WHERE rack_id = $rack AND as_of >= $start::TIMESTAMPTZ AND as_of < $end::TIMESTAMPTZ
ORDER BY as_of DESC LIMIT 200
"""
ALERTS_SQL = """
SELECT fingerprint, rule, status, severity, labels, summary, value, started_at, fired_at, event_at, learned_at,
    playback, acked_until, shelved_until,
    json_extract_string(labels, '$.rack_id') AS rack_id
FROM alert_state
"""
AUDIT_SQL = """
SELECT applied_at, requested_by, via, action, target, until, outcome, fingerprints, reason
FROM alert_audit ORDER BY applied_at DESC LIMIT 50
"""
TENANTS_SQL = """
SELECT tenant, to_timestamp(floor(epoch(window_start) / $bucket_s) * $bucket_s) AS period,
    sum(gpu_seconds) / 3600 AS gpu_hours, count(DISTINCT rack_id) AS racks
FROM tenant_minutes
WHERE window_start >= $start::TIMESTAMPTZ AND window_start < $end::TIMESTAMPTZ
GROUP BY ALL ORDER BY period, tenant
"""
"""GPU-hours per tenant per hour or day: ``tenant_usage_hourly``'s definition, read for the range only."""
GROUND_NOW_SQL = "SELECT max(as_of) AS now FROM fleet_health_now"
USAGE_SCHEMA = {"tenant": pl.String(), "period": pl.Datetime("us", "UTC"), "gpu_hours": pl.Float64()}
_LOS_REASON = "predicted loss of signal"
"""How ``processing.health.judge_now`` begins the reason of a silence it expected (the note says it shorter)."""
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_STATE_RANK = {state: rank for rank, state in enumerate(STATES)}


@dataclass(frozen=True, slots=True)
class Span:
    """A time range ``[start, end)`` of a page, named by its length (``1h`` .. ``7d``)."""

    name: str
    start: datetime
    end: datetime

    def params(self) -> Params:
        """The range as the statements' ``$start``/``$end``."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def ground_now(fleet: Fleet) -> datetime:
    """The ground's clock: the newest ``as_of`` of any shard (the wall clock for an empty history)."""
    frame = fleet.query(GROUND_NOW_SQL).drop_nulls("now")
    if frame.is_empty():
        return datetime.now(UTC)
    return _utc(frame["now"].max())


def span(name: str | None, end: datetime) -> Span:
    """The range called ``name`` (default 6h) ending at ``end`` rounded up to the minute."""
    key = name if name in RANGES else DEFAULT_RANGE
    rounded = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return Span(key, rounded - RANGES[key], rounded)


def fleet_view(fleet: Fleet) -> dict[str, Any]:
    """The fleet page: satellites with their racks (worst state first within each), and the totals."""
    racks, unreachable = fleet.query_answering(FLEET_SQL)
    rows = racks.to_dicts()
    for row in rows:
        row["contact_note"] = note = contact_note(row)
        row["shown_reasons"] = [r for r in row["reasons"] if not (note and r.startswith(_LOS_REASON))]
    rows.sort(key=lambda r: (r["satellite"], _STATE_RANK.get(r["state"], 9), r["rack_id"]))
    satellites: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        satellites.setdefault(row["satellite"], []).append(row)
    counts = {state: sum(1 for r in rows if r["state"] == state) for state in STATES}
    util = [r["util_mean"] for r in rows if r["util_mean"] is not None]
    totals = {
        "racks": len(rows),
        "gpus": sum(r["gpus"] or 0 for r in rows),
        "gpus_healthy": sum(r["gpus_healthy"] or 0 for r in rows),
        "gpus_available": sum(r["gpus_available"] or 0 for r in rows),
        "util_mean": sum(util) / len(util) if util else None,
        "alerts_firing": sum(r["alerts_firing"] for r in rows),
        "as_of": max((r["as_of"] for r in rows), default=None),
    }
    return {"satellites": satellites, "counts": counts, "totals": totals, "unreachable": _named(unreachable)}


def contact_note(row: dict[str, Any]) -> str:
    """For a rack silent in a predicted loss of signal: "no contact until about HH:MM" (UTC)."""
    nxt = row.get("predicted_next_contact")
    if row.get("state") == "unknown" and not row.get("in_contact_expected") and nxt is not None:
        return f"no contact until about {_utc(nxt):%H:%M} UTC"
    return ""


def rack_view(fleet: Fleet, rack: str, range_name: str | None) -> dict[str, Any] | None:
    """The rack page's data (None for a rack no shard knows): now, the 8x8 GPUs, the series, the log."""
    now = fleet.query(RACK_NOW_SQL, {"rack": rack})
    if now.is_empty():
        return None
    head = now.row(0, named=True)
    head["contact_note"] = contact_note(head)
    shard = int(head["shard"])
    source = Fleet([fleet.sources[shard]])  # the rack lives in one shard: ask that one only
    window = span(range_name, _utc(head["as_of"]))
    params: Params = {"rack": rack, **window.params()}
    series = source.query(SERIES_SQL, params)
    playback = source.query(PLAYBACK_SQL, params)
    series = series.join(playback.drop("shard"), on="window_start", how="left").with_columns(
        pl.col("playback_frames").fill_null(0)
    )
    return {
        "now": head,
        "span": window,
        "gpus": source.query(GPUS_SQL, {"rack": rack}).drop("shard").to_dicts(),
        "series": series.drop("shard").to_dicts(),
        "log": source.query(HEALTH_LOG_SQL, params).to_dicts(),
        "thresholds": thresholds(),
    }


def thresholds(t: HealthThresholds | None = None) -> dict[str, dict[str, float]]:
    """The health model's limits the plots draw as lines."""
    h = t or HealthThresholds()
    return {
        "temp_max": {"degraded": h.gpu_temp_degraded_c, "critical": h.gpu_temp_critical_c},
        "hbm_temp_max": {"degraded": h.hbm_temp_degraded_c, "critical": h.hbm_temp_critical_c},
    }


def alerts_view(fleet: Fleet) -> dict[str, Any]:
    """The alerts page: live alerts (firing first, then by severity and start) and the recent audit."""
    found, unreachable = fleet.query_answering(ALERTS_SQL)
    alerts = found.to_dicts()
    alerts.sort(key=lambda a: (a["status"] != "firing", _SEVERITY_RANK.get(a["severity"], 9), a["started_at"]))
    try:  # a shard that failed the alerts is named already; one of schema v6 or older has no audit yet
        found_audit, _ = fleet.query_answering(AUDIT_SQL)
        audit = found_audit.sort("applied_at", descending=True).head(50).to_dicts()
    except SourceError as exc:
        if "alert_audit" not in str(exc):
            raise
        audit = []
    return {"alerts": alerts, "audit": audit, "unreachable": _named(unreachable)}


def tenants_view(fleet: Fleet, range_name: str | None, bucket: str) -> tuple[Span, pl.DataFrame]:
    """GPU-hours per tenant per ``bucket`` (hour or day) over the range, summed over shards."""
    window = span(range_name, ground_now(fleet))
    bucket_s = 86400 if bucket == "day" else 3600
    rows = fleet.query(TENANTS_SQL, {**window.params(), "bucket_s": bucket_s})
    if rows.is_empty():
        return window, pl.DataFrame(schema=USAGE_SCHEMA)
    usage = (
        rows.group_by("tenant", "period")
        .agg(pl.col("gpu_hours").sum())
        .sort("period", "tenant")
        .with_columns(pl.col("period").dt.convert_time_zone("UTC"))
    )
    return window, usage


def _named(errors: list[SourceError]) -> list[dict[str, str]]:
    return [{"source": e.source, "message": str(e)} for e in errors]


def _utc(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
