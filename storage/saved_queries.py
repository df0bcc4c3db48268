"""Saved queries: the common operator questions, runnable by name with typed parameters.

``orbitwatch query --saved NAME --param key=value`` runs one; ``orbitwatch query --list-saved`` lists them.
Time spans count back from the newest minute stored (not from the wall clock), so a question about "the
last 6 hours" means the last 6 hours of data, also on a backlog, a copy or the demo's simulated day.
Parameters are bound by DuckDB (``$name``), never pasted into the SQL. Every ORDER BY ends on a key, so ties
come back in the same order from any DuckDB (the service, the file, the duckdb CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from storage.errors import QueryError
from storage.hourly import HOUR_OF_WINDOW
from storage.query import QueryResult, run_query

_NEWEST = "(SELECT max(window_start) FROM rack_windows_1m)"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter: its type (``int``, ``float`` or ``str``), default and meaning."""

    kind: type[int] | type[float] | type[str]
    default: int | float | str | None
    help: str


@dataclass(frozen=True, slots=True)
class SavedQuery:
    """A named question: what it answers, its SQL (``$name`` placeholders) and its parameters."""

    name: str
    description: str
    sql: str
    parameters: dict[str, Parameter] = field(default_factory=dict)


HOURS = Parameter(int, 6, "hours back from the newest data")


def _marks(rollup: str, covered_from: str, complete_before: str) -> str:
    """SQL: one row of the buckets every shard's ``rollup`` covers, ``[covered_from, complete_before)``, under
    those names (infinity and -infinity: none; open_shards unions each shard's row of ``rollup_marks``)."""
    return f"""(SELECT coalesce(CASE WHEN count(covered_from) = count(*) THEN max(covered_from) END,
            'infinity'::TIMESTAMPTZ) AS {covered_from},
        coalesce(min(complete_before), '-infinity'::TIMESTAMPTZ) AS {complete_before}
        FROM rollup_marks WHERE name = '{rollup}')"""


def _covered_hours(rollup: str) -> str:
    """SQL: one row of the span ``after`` (newest - ``$hours``), its first whole hour ``first_hour``, and the
    whole hours of it that ``rollup`` covers, ``[hours_from, hours_until)`` (empty when none): the other
    hours of the span are read from the minute table the rollup sums (``storage.hourly``). ``covered_from``
    and ``hours_before`` are the rollup's covered hours of any span (infinity and -infinity: none)."""
    return f"""SELECT after, first_hour, hours_from, greatest(hours_from, hours_before) AS hours_until, covered_from,
        hours_before FROM (
        SELECT after, first_hour, greatest(first_hour, covered_from) AS hours_from, covered_from, hours_before
        FROM (SELECT after, to_timestamp(floor(epoch(after) / 3600) * 3600 + 3600) AS first_hour
            FROM (SELECT {_NEWEST} - to_hours($hours::BIGINT) AS after)),
        {_marks(rollup, "covered_from", "hours_before")})"""


RISING_ECC_FROM_MINUTES = f"""SELECT rack_id, node, gpu, sum(ecc_dbe_inc) AS double_bit, sum(ecc_sbe_inc) AS single_bit,
    round(sum(ecc_sbe_inc) * 3600 / nullif(sum(samples), 0), 1) AS single_bit_per_hour,
    max(window_start) AS last_minute
FROM gpu_rollups_1m
WHERE window_start > {_NEWEST} - to_hours($hours::BIGINT)
GROUP BY ALL HAVING sum(ecc_dbe_inc) > 0 OR sum(ecc_sbe_inc) >= $min_single_bit
ORDER BY double_bit DESC, single_bit DESC, rack_id, node, gpu LIMIT $limit"""
"""What ``rising-ecc`` answers, defined over the minute windows alone (its definition until schema version 8,
kept as the reference its answers are tested against)."""
_TENANT_TOTALS = """SELECT tenant, CASE WHEN $tenant = '' THEN NULL ELSE hour END AS hour,
    round(sum(gpu_seconds) / 3600, 2) AS gpu_hours, sum(gpu_seconds) AS gpu_seconds, max(racks) AS racks
FROM hourly GROUP BY ALL ORDER BY gpu_hours DESC, tenant, hour"""
TENANT_USAGE_FROM_MINUTES = f"""WITH hourly AS (
    SELECT tenant, {HOUR_OF_WINDOW} AS hour, sum(gpu_seconds) AS gpu_seconds, count(DISTINCT rack_id) AS racks
    FROM tenant_minutes
    WHERE window_start >= to_timestamp(floor(epoch({_NEWEST} - to_hours($hours::BIGINT)) / 3600) * 3600 + 3600)
        AND ($tenant = '' OR tenant = $tenant)
    GROUP BY ALL)
{_TENANT_TOTALS}"""
"""What ``tenant-usage`` answers, defined over the tenant minutes alone: ``tenant_usage_hourly``'s rows of the
whole hours starting after newest - hours (its definition until schema version 9, kept as the reference its
answers are tested against). ``gpu_hours`` rounds the exact integer sum of GPU-seconds: until version 9 it
summed the hours' quotients, and a total on a half-hundredth (846 s = 0.235 h) rounded up or down with the
order DuckDB happened to add them in, which differs between a table of hours and a table of minutes."""
SAVED_QUERIES: dict[str, SavedQuery] = {
    q.name: q
    for q in (
        SavedQuery(
            "hottest-racks",
            "Racks by their hottest GPU over the last hours, with coverage and worst health state.",
            f"""SELECT rack_id, round(max(temp_max), 1) AS max_gpu_temp_c,
                round(max(hbm_temp_max), 1) AS max_hbm_temp_c, round(sum(frames) / sum(expected_s), 3) AS coverage,
                CASE max(CASE state WHEN 'critical' THEN 2 WHEN 'degraded' THEN 1 WHEN 'ok' THEN 0 END)
                    WHEN 2 THEN 'critical' WHEN 1 THEN 'degraded' WHEN 0 THEN 'ok' ELSE 'unknown' END AS worst_state
            FROM rack_rollups_1m
            WHERE window_start > {_NEWEST} - to_hours($hours::BIGINT)
            GROUP BY rack_id ORDER BY max_gpu_temp_c DESC NULLS LAST, rack_id LIMIT $limit""",
            {"hours": HOURS, "limit": Parameter(int, 10, "racks listed")},
        ),
        SavedQuery(
            "rising-ecc",
            "GPUs with single- or double-bit ECC errors over the last hours, most first.",
            # The GPU windows' sums per GPU, read from gpu_ecc_hours for the whole hours it covers, from
            # gpu_ecc_slices for the 10-minute slices after them, and from the minute windows for the rest
            # (storage.ecc_hours): the answer of the same sums over the minutes alone (RISING_ECC_FROM_MINUTES),
            # without reading a day of GPU-minute windows.
            f"""WITH covered AS ({_covered_hours("gpu_ecc_hours")}),
            -- the span's first, partial hour: its minutes after `after`, or, when `after` lies in the first half
            -- of the hour and the hour is rolled, its rolled rows less its minutes up to `after` (fewer rows);
            -- after the covered hours, the 10-minute slices gpu_ecc_slices covers, [slices_from, slices_until)
            bounds AS MATERIALIZED (
                SELECT after, hours_until, subtract,
                    CASE WHEN subtract THEN lead_hour ELSE hours_from END AS hours_from,
                    slices_from, greatest(slices_from, slices_before) AS slices_until
                FROM (SELECT *, covered_from <= lead_hour AND hours_before >= first_hour
                    AND after < lead_hour + INTERVAL 30 MINUTE AS subtract,
                    greatest(hours_until, slices_covered_from) AS slices_from
                    FROM (SELECT *, first_hour - INTERVAL 1 HOUR AS lead_hour FROM covered),
                    {_marks("gpu_ecc_slices", "slices_covered_from", "slices_before")})),
            minutes AS (
                SELECT rack_id, node, gpu, window_start, samples, ecc_sbe_inc, ecc_dbe_inc FROM gpu_rollups_1m
                WHERE window_start > (SELECT after FROM bounds) AND window_start < (SELECT hours_from FROM bounds)
                UNION ALL
                SELECT rack_id, node, gpu, window_start, samples, ecc_sbe_inc, ecc_dbe_inc FROM gpu_rollups_1m
                WHERE window_start > (SELECT after FROM bounds) AND window_start >= (SELECT hours_until FROM bounds)
                    AND window_start < (SELECT slices_from FROM bounds)
                UNION ALL
                SELECT rack_id, node, gpu, window_start, samples, ecc_sbe_inc, ecc_dbe_inc FROM gpu_rollups_1m
                WHERE window_start > (SELECT after FROM bounds)
                    AND window_start >= (SELECT slices_until FROM bounds)),
            terms AS (
                SELECT rack_id, node, gpu, samples, coalesce(ecc_sbe_inc, 0) AS sbe,
                    (ecc_sbe_inc IS NOT NULL)::BIGINT AS sbe_minutes, coalesce(ecc_dbe_inc, 0) AS dbe,
                    (ecc_dbe_inc IS NOT NULL)::BIGINT AS dbe_minutes, window_start AS last_minute
                FROM minutes
                UNION ALL
                -- taken away: the first hour's minutes up to `after`, when its rolled rows are read. Their last
                -- minutes, like the rolled hour's, may lie before the span: a GPU without a window in the span
                -- nets no minutes and is not listed, and one with a window there has a later last minute
                SELECT rack_id, node, gpu, -samples, -coalesce(ecc_sbe_inc, 0), -(ecc_sbe_inc IS NOT NULL)::BIGINT,
                    -coalesce(ecc_dbe_inc, 0), -(ecc_dbe_inc IS NOT NULL)::BIGINT, window_start
                FROM gpu_rollups_1m
                WHERE (SELECT subtract FROM bounds) AND window_start >= (SELECT hours_from FROM bounds)
                    AND window_start <= (SELECT after FROM bounds)
                UNION ALL
                SELECT rack_id, node, gpu, samples, ecc_sbe_inc, ecc_sbe_minutes, ecc_dbe_inc, ecc_dbe_minutes,
                    last_minute
                FROM gpu_ecc_hours
                WHERE hour >= (SELECT hours_from FROM bounds) AND hour < (SELECT hours_until FROM bounds)
                UNION ALL
                SELECT rack_id, node, gpu, samples, ecc_sbe_inc, ecc_sbe_minutes, ecc_dbe_inc, ecc_dbe_minutes,
                    last_minute
                FROM gpu_ecc_slices
                WHERE slice >= (SELECT slices_from FROM bounds) AND slice < (SELECT slices_until FROM bounds)),
            -- with min_single_bit >= 1 a listed GPU has a positive term: only those GPUs' terms are summed
            candidates AS (SELECT DISTINCT rack_id, node, gpu FROM terms WHERE sbe > 0 OR dbe > 0),
            listed AS (
                SELECT * FROM terms WHERE $min_single_bit <= 0
                UNION ALL
                SELECT t.* FROM terms t SEMI JOIN candidates c USING (rack_id, node, gpu) WHERE $min_single_bit > 0)
            SELECT rack_id, node, gpu, CASE WHEN sum(dbe_minutes) > 0 THEN sum(dbe) END AS double_bit,
                CASE WHEN sum(sbe_minutes) > 0 THEN sum(sbe) END AS single_bit,
                round(single_bit * 3600 / nullif(sum(samples), 0), 1) AS single_bit_per_hour,
                max(last_minute) AS last_minute
            FROM listed
            GROUP BY rack_id, node, gpu HAVING double_bit > 0 OR single_bit >= $min_single_bit
            ORDER BY double_bit DESC, single_bit DESC, rack_id, node, gpu LIMIT $limit""",
            {
                "hours": Parameter(int, 24, "hours back from the newest data"),
                "min_single_bit": Parameter(int, 1, "single-bit errors needed to list a GPU"),
                "limit": Parameter(int, 20, "GPUs listed"),
            },
        ),
        SavedQuery(
            "tenant-usage",
            "GPU-hours per tenant over the last hours (or one tenant's hours, hour by hour).",
            # tenant_usage_hourly's rows over whole hours starting after newest - hours: from tenant_hours
            # for the hours it covers, from tenant_minutes for the rest (storage.tenant_hours); the answer
            # of TENANT_USAGE_FROM_MINUTES.
            f"""WITH bounds AS ({_covered_hours("tenant_hours")}),
            per_rack AS (
                SELECT tenant, {HOUR_OF_WINDOW} AS hour, rack_id, gpu_seconds, 1 AS minutes FROM tenant_minutes
                WHERE window_start >= (SELECT first_hour FROM bounds) AND window_start < (SELECT hours_from FROM bounds)
                    AND ($tenant = '' OR tenant = $tenant)
                UNION ALL
                SELECT tenant, {HOUR_OF_WINDOW} AS hour, rack_id, gpu_seconds, 1 AS minutes FROM tenant_minutes
                WHERE window_start >= (SELECT first_hour FROM bounds)
                    AND window_start >= (SELECT hours_until FROM bounds) AND ($tenant = '' OR tenant = $tenant)
                UNION ALL
                SELECT tenant, hour, rack_id, gpu_seconds, minutes FROM tenant_hours
                WHERE hour >= (SELECT hours_from FROM bounds) AND hour < (SELECT hours_until FROM bounds)
                    AND ($tenant = '' OR tenant = $tenant)),
            hourly AS (
                SELECT tenant, hour, sum(gpu_seconds) AS gpu_seconds, count(*) AS racks FROM (
                    SELECT tenant, hour, rack_id, sum(gpu_seconds) AS gpu_seconds FROM per_rack
                    GROUP BY tenant, hour, rack_id HAVING sum(minutes) > 0)
                GROUP BY tenant, hour)
            {_TENANT_TOTALS}""",
            {
                "hours": Parameter(int, 24, "hours back from the newest data"),
                "tenant": Parameter(str, "", "one tenant"),
            },
        ),
        SavedQuery(
            "telemetry-gaps",
            "Frames still missing per rack and boot epoch (largest first); playback closes them.",
            """SELECT rack_id, boot_epoch, first_missing, last_missing, missing, detected_at
            FROM telemetry_gaps WHERE missing >= $min_missing
            ORDER BY missing DESC, rack_id, boot_epoch, first_missing LIMIT $limit""",
            {"min_missing": Parameter(int, 1, "smallest gap listed"), "limit": Parameter(int, 50, "gaps listed")},
        ),
        SavedQuery(
            "rack-health-changes",
            "When a rack's health changed, in event time (rack_health_history), with the reasons.",
            f"""SELECT window_start, state, reasons FROM (
                SELECT window_start, state, reasons, lag(state) OVER (ORDER BY window_start) AS before
                FROM rack_health_history
                WHERE rack_id = $rack AND window_start > {_NEWEST} - to_hours($hours::BIGINT))
            WHERE before IS NULL OR before != state ORDER BY window_start""",
            {"rack": Parameter(str, None, "rack id, e.g. sat-0002/rack-3"), "hours": Parameter(int, 24, "hours back")},
        ),
    )
}


def bind(query: SavedQuery, given: dict[str, str]) -> dict[str, int | float | str]:
    """Typed values of ``given`` (``key=value`` strings) over the defaults; QueryError naming the problem."""
    unknown = sorted(set(given) - set(query.parameters))
    if unknown:
        raise QueryError(f"{query.name} has no parameter {', '.join(unknown)} (it has: {', '.join(query.parameters)})")
    values: dict[str, int | float | str] = {}
    for name, parameter in query.parameters.items():
        if name in given:
            try:
                values[name] = parameter.kind(given[name])
            except ValueError:
                raise QueryError(
                    f"{query.name}: {name} must be {parameter.kind.__name__}, got {given[name]!r}"
                ) from None
        elif parameter.default is None:
            raise QueryError(f"{query.name} needs --param {name}=... ({parameter.help})")
        else:
            values[name] = parameter.default
    return values


def run_saved(
    con: duckdb.DuckDBPyConnection, name: str, given: dict[str, str], max_rows: int | None = None
) -> QueryResult:
    """Run the saved query ``name`` with ``given`` parameters; QueryError for an unknown name or bad value."""
    query = SAVED_QUERIES.get(name)
    if query is None:
        raise QueryError(f"no saved query {name!r} (saved: {', '.join(SAVED_QUERIES)})")
    return run_query(con, query.sql, max_rows=max_rows, parameters=bind(query, given))
