"""The explicit, versioned DuckDB schema. Each migration runs once, in order, inside a transaction.

Tables (columns are documented in the README):
- ``rack_frames``: one row per distinct frame (rack_id, boot_epoch, frame_seq); the primary key is what
  makes a frame stored once however often it arrives.
- ``gpu_samples``: one row per GPU per stored frame.
- ``dead_letters``: messages that could not be stored, with raw bytes and reason; keyed by coordinates.
- ``kafka_offsets``: per topic partition, the next offset to read and exactly-once counters; written in
  the same transaction as the rows, so it is the truth the consumer seeks to.
- v2, derived: ``gpu_windows_1m``, ``rack_windows_1m``, ``tenant_minutes`` (rollups), ``open_gaps``,
  ``seq_bounds``, ``rack_link``, ``rack_health_now`` (state), ``rack_health_log``, and the operator views.
- v3, alerting: ``alert_state`` and ``alert_outbox``.
- v4, retention: ``archive_log``: one row per Parquet file a day of a table was moved to (the archive's
  truth: readers list its files, never a directory glob, so a file is read once and only once committed).
- v5, offsets: ``partition_handovers``: partitions a rebalance moved to another member of the consumer
  group while this daemon ran, with the offset handed over (``ingest.resume`` tells a handover from a
  history that lost messages by it).
- v6, offsets: ``partition_claims``: partitions this history was assigned, with the offset it began reading
  each at (NULL: ``auto_offset_reset``), so a history that lost every batch of a partition (a restored
  backup, a lost WAL) still knows the partition was its own and reads it again.
- v7, alerting: ``alert_audit``: operators' alert commands, who asked and when, applied or rejected
  (``alerting.audit``).
- v8, derived: ``gpu_ecc_hours``: the GPU windows' samples and ECC increments per GPU and hour, and
  ``rollup_marks``: which hours it covers (``storage.ecc_hours``; the saved query ``rising-ecc`` reads it).
- v9, derived: ``tenant_hours``: GPU-seconds per tenant, rack and hour (``storage.tenant_hours``; the saved
  query ``tenant-usage`` reads it).
- v10, derived: ``gpu_ecc_slices``: ``gpu_ecc_hours``'s sums per 10-minute slice of the last two hours
  rolled (``storage.ecc_hours``; ``rising-ecc`` reads it for the open hour).

**Migrations are frozen; declarations are current.** A migration's statements are the text it ran, kept
verbatim (here and in ``storage.alert_schema``) and never rendered from a declaration: a fresh database
must get from migration N exactly what every database that ran N got, or fresh and upgraded databases
would drift apart the day a declaration changed. The tables' current shapes are declared once in
``storage.tables`` (``storage.table.Table``: DDL and polars schema from one declaration), and code takes
its polars schemas from there. Changing a table means a new migration (e.g. ``ALTER TABLE``) plus the
declaration; ``tests/test_table_declarations.py`` fails until a freshly migrated database has exactly the
declared columns, types, nullability, defaults, keys and checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from storage.alert_schema import AUDIT_DDL, OUTBOX_DDL, STATE_DDL
from storage.errors import SchemaVersionError

_GPU_WINDOW_TABLE = """CREATE TABLE gpu_windows_1m (
                rack_id VARCHAR NOT NULL,
                node INTEGER NOT NULL,
                gpu INTEGER NOT NULL,
                window_start TIMESTAMPTZ NOT NULL,
                samples BIGINT NOT NULL,
                expected_s BIGINT NOT NULL,
                coverage DOUBLE NOT NULL,
                util_mean DOUBLE,
                util_max DOUBLE,
                util_readings BIGINT NOT NULL,
                power_mean DOUBLE,
                power_max DOUBLE,
                power_readings BIGINT NOT NULL,
                temp_mean DOUBLE,
                temp_max DOUBLE,
                temp_readings BIGINT NOT NULL,
                hbm_temp_mean DOUBLE,
                hbm_temp_max DOUBLE,
                hbm_temp_readings BIGINT NOT NULL,
                mem_used_mean DOUBLE,
                mem_used_max DOUBLE,
                mem_used_readings BIGINT NOT NULL,
                util_mean_covered DOUBLE,
                ecc_sbe_inc BIGINT,
                ecc_dbe_inc BIGINT,
                nvlink_inc BIGINT,
                xid_count BIGINT NOT NULL,
                xids INTEGER[] NOT NULL,
                throttled_s_hw_slowdown BIGINT NOT NULL,
                throttled_s_sw_thermal BIGINT NOT NULL,
                throttled_s_hw_thermal BIGINT NOT NULL,
                throttled_s_power_brake BIGINT NOT NULL,
                row_remap_pending BOOLEAN NOT NULL,
                busy_s BIGINT NOT NULL,
                last_epoch INTEGER NOT NULL,
                last_seq BIGINT NOT NULL,
                ecc_sbe_last BIGINT,
                ecc_dbe_last BIGINT,
                nvlink_errors_last BIGINT,
                state VARCHAR NOT NULL,
                reasons VARCHAR[] NOT NULL,
                computed_at TIMESTAMPTZ NOT NULL)"""
_RACK_WINDOW_TABLE = """CREATE TABLE rack_windows_1m (
                rack_id VARCHAR NOT NULL,
                window_start TIMESTAMPTZ NOT NULL,
                frames BIGINT NOT NULL,
                expected_s BIGINT NOT NULL,
                coverage DOUBLE NOT NULL,
                gpus BIGINT NOT NULL,
                gpu_samples BIGINT NOT NULL,
                util_mean DOUBLE,
                util_max DOUBLE,
                util_readings BIGINT NOT NULL,
                power_mean DOUBLE,
                power_max DOUBLE,
                power_readings BIGINT NOT NULL,
                temp_mean DOUBLE,
                temp_max DOUBLE,
                temp_readings BIGINT NOT NULL,
                hbm_temp_mean DOUBLE,
                hbm_temp_max DOUBLE,
                hbm_temp_readings BIGINT NOT NULL,
                mem_used_mean DOUBLE,
                mem_used_max DOUBLE,
                mem_used_readings BIGINT NOT NULL,
                util_mean_covered DOUBLE,
                ecc_sbe_inc BIGINT NOT NULL,
                ecc_dbe_inc BIGINT NOT NULL,
                nvlink_inc BIGINT NOT NULL,
                xid_count BIGINT NOT NULL,
                throttled_s_hw_slowdown BIGINT NOT NULL,
                throttled_s_sw_thermal BIGINT NOT NULL,
                throttled_s_hw_thermal BIGINT NOT NULL,
                throttled_s_power_brake BIGINT NOT NULL,
                busy_s BIGINT NOT NULL,
                row_remap_pending_gpus BIGINT NOT NULL,
                seu_inc BIGINT,
                bus_w_mean DOUBLE,
                bus_w_max DOUBLE,
                battery_soc_mean DOUBLE,
                battery_soc_max DOUBLE,
                radiator_c_mean DOUBLE,
                radiator_c_max DOUBLE,
                coolant_inlet_c_mean DOUBLE,
                coolant_inlet_c_max DOUBLE,
                coolant_outlet_c_mean DOUBLE,
                coolant_outlet_c_max DOUBLE,
                battery_soc_min DOUBLE,
                in_eclipse_fraction DOUBLE,
                last_frame_at TIMESTAMPTZ,
                last_epoch INTEGER NOT NULL,
                last_seq BIGINT NOT NULL,
                seu_count_last BIGINT,
                gpu_state VARCHAR NOT NULL,
                gpu_reasons VARCHAR[] NOT NULL,
                state VARCHAR NOT NULL,
                reasons VARCHAR[] NOT NULL,
                computed_at TIMESTAMPTZ NOT NULL)"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its number, what it does, and its SQL statements."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "backbone: frames, GPU samples, dead letters, Kafka offsets",
        (
            """CREATE TABLE kafka_offsets (
                topic VARCHAR NOT NULL,
                kafka_partition INTEGER NOT NULL,
                next_offset BIGINT NOT NULL,
                messages BIGINT NOT NULL,
                frames_stored BIGINT NOT NULL,
                duplicates_dropped BIGINT NOT NULL,
                dead_letters BIGINT NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (topic, kafka_partition))""",
            """CREATE TABLE rack_frames (
                rack_id VARCHAR NOT NULL,
                boot_epoch INTEGER NOT NULL,
                frame_seq BIGINT NOT NULL,
                satellite_id VARCHAR NOT NULL,
                sampled_at TIMESTAMPTZ NOT NULL,
                stored BOOLEAN NOT NULL,
                firmware VARCHAR NOT NULL,
                ground_station VARCHAR,
                bus_w REAL,
                solar_w REAL,
                battery_soc REAL,
                in_eclipse BOOLEAN NOT NULL,
                radiator_c REAL,
                coolant_inlet_c REAL,
                coolant_outlet_c REAL,
                seu_count BIGINT,
                dose_rate_mrad_h REAL,
                invalid_mask INTEGER NOT NULL,
                schema_id BIGINT NOT NULL,
                kafka_partition INTEGER NOT NULL,
                kafka_offset BIGINT NOT NULL,
                received_at TIMESTAMPTZ NOT NULL,
                ingested_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (rack_id, boot_epoch, frame_seq))""",
            """CREATE TABLE gpu_samples (
                rack_id VARCHAR NOT NULL,
                boot_epoch INTEGER NOT NULL,
                frame_seq BIGINT NOT NULL,
                sampled_at TIMESTAMPTZ NOT NULL,
                node INTEGER NOT NULL,
                gpu INTEGER NOT NULL,
                util_pct REAL,
                mem_used_mib INTEGER,
                mem_total_mib INTEGER,
                power_w REAL,
                temp_c REAL,
                hbm_temp_c REAL,
                sm_clock_mhz INTEGER,
                ecc_sbe BIGINT,
                ecc_dbe BIGINT,
                xid INTEGER,
                nvlink_errors BIGINT,
                row_remap_pending BOOLEAN NOT NULL,
                throttle_reasons INTEGER NOT NULL,
                tenant VARCHAR,
                invalid_mask INTEGER NOT NULL)""",
            """CREATE TABLE dead_letters (
                topic VARCHAR NOT NULL,
                kafka_partition INTEGER NOT NULL,
                kafka_offset BIGINT NOT NULL,
                kafka_timestamp TIMESTAMPTZ NOT NULL,
                message_key BLOB,
                raw_value BLOB,
                reason VARCHAR NOT NULL,
                dead_lettered_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (topic, kafka_partition, kafka_offset))""",
        ),
    ),
    Migration(
        2,
        "derived: per-minute GPU and rack windows, tenant usage, gaps, link state, health, operator views",
        (
            _GPU_WINDOW_TABLE,
            _RACK_WINDOW_TABLE,
            """CREATE TABLE tenant_minutes (
                rack_id VARCHAR NOT NULL,
                window_start TIMESTAMPTZ NOT NULL,
                tenant VARCHAR NOT NULL,
                gpu_seconds BIGINT NOT NULL,
                gpu_ids INTEGER[] NOT NULL)""",
            """CREATE TABLE open_gaps (
                rack_id VARCHAR NOT NULL,
                boot_epoch INTEGER NOT NULL,
                first_missing BIGINT NOT NULL,
                last_missing BIGINT NOT NULL,
                missing BIGINT NOT NULL,
                detected_at TIMESTAMPTZ NOT NULL)""",
            """CREATE TABLE seq_bounds (
                rack_id VARCHAR NOT NULL,
                boot_epoch INTEGER NOT NULL,
                min_seq BIGINT NOT NULL,
                max_seq BIGINT NOT NULL)""",
            """CREATE TABLE rack_link (
                rack_id VARCHAR NOT NULL,
                last_frame_at TIMESTAMPTZ,
                last_sampled_at TIMESTAMPTZ,
                last_live_at TIMESTAMPTZ,
                pass_starts TIMESTAMPTZ[] NOT NULL,
                passes_seen UINTEGER NOT NULL,
                expected_frame_interval_s DOUBLE)""",
            """CREATE TABLE rack_health_now (
                rack_id VARCHAR NOT NULL,
                as_of TIMESTAMPTZ NOT NULL,
                state VARCHAR NOT NULL,
                reasons VARCHAR[] NOT NULL,
                last_known_state VARCHAR NOT NULL,
                last_known_reasons VARCHAR[] NOT NULL,
                last_window_start TIMESTAMPTZ NOT NULL,
                last_frame_at TIMESTAMPTZ,
                in_contact_expected BOOLEAN NOT NULL,
                predicted_next_contact TIMESTAMPTZ)""",
            """CREATE TABLE rack_health_log (
                rack_id VARCHAR NOT NULL,
                as_of TIMESTAMPTZ NOT NULL,
                state VARCHAR NOT NULL,
                reasons VARCHAR[] NOT NULL,
                last_window_start TIMESTAMPTZ NOT NULL,
                logged_at TIMESTAMPTZ NOT NULL)""",
            """CREATE VIEW gpu_rollups_1m AS SELECT
                rack_id, node, gpu, window_start, samples, expected_s, coverage,
                util_mean, util_max, util_readings, util_mean_covered, power_mean, power_max, power_readings,
                temp_mean, temp_max, temp_readings, hbm_temp_mean, hbm_temp_max, hbm_temp_readings,
                mem_used_mean, mem_used_max, mem_used_readings, ecc_sbe_inc, ecc_dbe_inc, nvlink_inc,
                xid_count, xids, throttled_s_hw_slowdown, throttled_s_sw_thermal, throttled_s_hw_thermal,
                throttled_s_power_brake, row_remap_pending, busy_s, state, reasons
                FROM gpu_windows_1m""",
            """CREATE VIEW rack_rollups_1m AS SELECT
                rack_id, window_start, frames, expected_s, coverage, gpus, gpu_samples,
                util_mean, util_max, util_readings, util_mean_covered, power_mean, power_max, power_readings,
                temp_mean, temp_max, temp_readings, hbm_temp_mean, hbm_temp_max, hbm_temp_readings,
                mem_used_mean, mem_used_max, mem_used_readings, ecc_sbe_inc, ecc_dbe_inc, nvlink_inc,
                xid_count, throttled_s_hw_slowdown, throttled_s_sw_thermal, throttled_s_hw_thermal,
                throttled_s_power_brake, busy_s, row_remap_pending_gpus, seu_inc, bus_w_mean, bus_w_max,
                battery_soc_mean, battery_soc_max, battery_soc_min, radiator_c_mean, radiator_c_max,
                coolant_inlet_c_mean, coolant_inlet_c_max, coolant_outlet_c_mean, coolant_outlet_c_max,
                in_eclipse_fraction, last_frame_at, state, reasons
                FROM rack_windows_1m""",
            """CREATE VIEW rack_rollups_1h AS
                SELECT *, util_mean * coverage AS util_mean_covered FROM (
                    SELECT rack_id, to_timestamp(floor(epoch(window_start) / 3600) * 3600) AS window_start,
                    count(*) AS minutes, sum(frames) AS frames, 3600 AS expected_s, sum(frames) / 3600 AS coverage,
                    max(gpus) AS gpus, sum(gpu_samples) AS gpu_samples,
                    sum(util_mean * util_readings) / nullif(sum(util_readings), 0) AS util_mean,
                    max(util_max) AS util_max, sum(util_readings) AS util_readings,
                    sum(power_mean * power_readings) / nullif(sum(power_readings), 0) AS power_mean,
                    max(power_max) AS power_max, sum(power_readings) AS power_readings,
                    sum(temp_mean * temp_readings) / nullif(sum(temp_readings), 0) AS temp_mean,
                    max(temp_max) AS temp_max, sum(temp_readings) AS temp_readings,
                    sum(hbm_temp_mean * hbm_temp_readings) / nullif(sum(hbm_temp_readings), 0) AS hbm_temp_mean,
                    max(hbm_temp_max) AS hbm_temp_max, sum(hbm_temp_readings) AS hbm_temp_readings,
                    sum(mem_used_mean * mem_used_readings) / nullif(sum(mem_used_readings), 0) AS mem_used_mean,
                    max(mem_used_max) AS mem_used_max, sum(mem_used_readings) AS mem_used_readings,
                    sum(ecc_sbe_inc) AS ecc_sbe_inc, sum(ecc_dbe_inc) AS ecc_dbe_inc, sum(nvlink_inc) AS nvlink_inc,
                    sum(xid_count) AS xid_count, sum(throttled_s_hw_slowdown) AS throttled_s_hw_slowdown,
                    sum(throttled_s_sw_thermal) AS throttled_s_sw_thermal,
                    sum(throttled_s_hw_thermal) AS throttled_s_hw_thermal,
                    sum(throttled_s_power_brake) AS throttled_s_power_brake, sum(busy_s) AS busy_s,
                    max(row_remap_pending_gpus) AS row_remap_pending_gpus, sum(seu_inc) AS seu_inc,
                    sum(bus_w_mean * frames) FILTER (bus_w_mean IS NOT NULL)
                        / nullif(sum(frames) FILTER (bus_w_mean IS NOT NULL), 0) AS bus_w_mean,
                    max(bus_w_max) AS bus_w_max,
                    sum(battery_soc_mean * frames) FILTER (battery_soc_mean IS NOT NULL)
                        / nullif(sum(frames) FILTER (battery_soc_mean IS NOT NULL), 0) AS battery_soc_mean,
                    max(battery_soc_max) AS battery_soc_max,
                    sum(radiator_c_mean * frames) FILTER (radiator_c_mean IS NOT NULL)
                        / nullif(sum(frames) FILTER (radiator_c_mean IS NOT NULL), 0) AS radiator_c_mean,
                    max(radiator_c_max) AS radiator_c_max,
                    sum(coolant_inlet_c_mean * frames) FILTER (coolant_inlet_c_mean IS NOT NULL)
                        / nullif(sum(frames) FILTER (coolant_inlet_c_mean IS NOT NULL), 0) AS coolant_inlet_c_mean,
                    max(coolant_inlet_c_max) AS coolant_inlet_c_max,
                    sum(coolant_outlet_c_mean * frames) FILTER (coolant_outlet_c_mean IS NOT NULL)
                        / nullif(sum(frames) FILTER (coolant_outlet_c_mean IS NOT NULL), 0) AS coolant_outlet_c_mean,
                    max(coolant_outlet_c_max) AS coolant_outlet_c_max,
                    min(battery_soc_min) AS battery_soc_min,
                    sum(in_eclipse_fraction * frames) / sum(frames) AS in_eclipse_fraction,
                    max(last_frame_at) AS last_frame_at,
                    CASE max(CASE state WHEN 'critical' THEN 2 WHEN 'degraded' THEN 1 WHEN 'ok' THEN 0 END)
                        WHEN 2 THEN 'critical' WHEN 1 THEN 'degraded' WHEN 0 THEN 'ok' ELSE 'unknown' END
                        AS worst_state
                    FROM rack_windows_1m GROUP BY ALL)""",
            """CREATE VIEW tenant_usage_hourly AS
                SELECT tenant, hour, sum(gpu_seconds) AS gpu_seconds, sum(gpu_seconds) / 3600 AS gpu_hours,
                    count(*) AS racks, sum(gpus) AS gpus
                FROM (
                    SELECT tenant, to_timestamp(floor(epoch(window_start) / 3600) * 3600) AS hour, rack_id,
                        sum(gpu_seconds) AS gpu_seconds, len(list_distinct(flatten(list(gpu_ids)))) AS gpus
                    FROM tenant_minutes GROUP BY ALL)
                GROUP BY tenant, hour""",
            """CREATE VIEW telemetry_gaps AS
                SELECT rack_id, boot_epoch, first_missing, last_missing, missing, detected_at FROM open_gaps""",
            """CREATE VIEW fleet_health_now AS
                SELECT rack_id, as_of, state, reasons, last_known_state, last_window_start, last_frame_at,
                    in_contact_expected, predicted_next_contact
                FROM rack_health_now""",
            """CREATE VIEW rack_health_history AS
                SELECT rack_id, window_start, state, reasons, coverage, frames, computed_at FROM rack_windows_1m""",
            """CREATE VIEW node_health_1m AS
                SELECT rack_id, node, window_start,
                    CASE max(CASE state WHEN 'critical' THEN 2 WHEN 'degraded' THEN 1 WHEN 'ok' THEN 0 END)
                        WHEN 2 THEN 'critical' WHEN 1 THEN 'degraded' WHEN 0 THEN 'ok' ELSE 'unknown' END AS state,
                    flatten(list(list_transform(reasons, lambda r: 'gpu ' || gpu || ': ' || r) ORDER BY gpu))
                        AS reasons
                FROM gpu_windows_1m GROUP BY rack_id, node, window_start""",
            """CREATE VIEW fleet_utilization_1m AS
                SELECT *, util_mean * coverage AS util_mean_covered FROM (
                    SELECT window_start, count(DISTINCT rack_id) AS racks_reporting, count(*) AS gpus_reporting,
                        count(*) FILTER (state = 'ok') AS gpus_healthy,
                        count(*) FILTER (busy_s > 0) AS gpus_busy,
                        count(*) FILTER (state = 'ok' AND busy_s = 0) AS gpus_available,
                        sum(util_mean * util_readings) / nullif(sum(util_readings), 0) AS util_mean,
                        sum(samples) / sum(expected_s) AS coverage
                    FROM gpu_windows_1m GROUP BY window_start)""",
        ),
    ),
    Migration(
        3,
        "alerting: alert lifecycle state and the notification outbox",
        (STATE_DDL, *OUTBOX_DDL),
    ),
    Migration(
        4,
        "retention: the log of days moved to the Parquet archive",
        (
            """CREATE TABLE archive_log (
                id BIGINT PRIMARY KEY,
                table_name VARCHAR NOT NULL,
                day DATE NOT NULL,
                path VARCHAR NOT NULL UNIQUE,
                row_count BIGINT NOT NULL,
                file_bytes BIGINT NOT NULL,
                min_time TIMESTAMPTZ NOT NULL,
                max_time TIMESTAMPTZ NOT NULL,
                archived_at TIMESTAMPTZ NOT NULL)""",
        ),
    ),
    Migration(
        5,
        "offsets: partitions handed over to another member of the consumer group",
        (
            """CREATE TABLE partition_handovers (
                topic VARCHAR NOT NULL,
                kafka_partition INTEGER NOT NULL,
                next_offset BIGINT NOT NULL,
                handed_over_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (topic, kafka_partition))""",
        ),
    ),
    Migration(
        6,
        "offsets: the partitions this history was assigned and where it began reading each",
        (
            """CREATE TABLE partition_claims (
                topic VARCHAR NOT NULL,
                kafka_partition INTEGER NOT NULL,
                first_offset BIGINT,
                claimed_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (topic, kafka_partition))""",
        ),
    ),
    Migration(7, "alerting: the audit of operators' alert commands (who, when, what came of it)", (AUDIT_DDL,)),
    Migration(
        8,
        "derived: GPU samples and ECC increments per hour, and the hours they cover",
        (
            """CREATE TABLE gpu_ecc_hours (
                rack_id VARCHAR NOT NULL,
                node INTEGER NOT NULL,
                gpu INTEGER NOT NULL,
                hour TIMESTAMPTZ NOT NULL,
                minutes BIGINT NOT NULL,
                samples BIGINT NOT NULL,
                ecc_sbe_inc BIGINT NOT NULL,
                ecc_sbe_minutes BIGINT NOT NULL,
                ecc_dbe_inc BIGINT NOT NULL,
                ecc_dbe_minutes BIGINT NOT NULL,
                last_minute TIMESTAMPTZ)""",
            """CREATE TABLE rollup_marks (
                name VARCHAR NOT NULL,
                covered_from TIMESTAMPTZ,
                complete_before TIMESTAMPTZ,
                PRIMARY KEY (name))""",
            "INSERT INTO rollup_marks VALUES ('gpu_ecc_hours', NULL, NULL)",
        ),
    ),
    Migration(
        9,
        "derived: GPU-seconds per tenant, rack and hour",
        (
            """CREATE TABLE tenant_hours (
                tenant VARCHAR NOT NULL,
                rack_id VARCHAR NOT NULL,
                hour TIMESTAMPTZ NOT NULL,
                minutes BIGINT NOT NULL,
                gpu_seconds BIGINT NOT NULL)""",
            "INSERT INTO rollup_marks VALUES ('tenant_hours', NULL, NULL)",
        ),
    ),
    Migration(
        10,
        "derived: GPU samples and ECC increments per GPU and recent 10-minute slice",
        (
            """CREATE TABLE gpu_ecc_slices (
                rack_id VARCHAR NOT NULL,
                node INTEGER NOT NULL,
                gpu INTEGER NOT NULL,
                slice TIMESTAMPTZ NOT NULL,
                minutes BIGINT NOT NULL,
                samples BIGINT NOT NULL,
                ecc_sbe_inc BIGINT NOT NULL,
                ecc_sbe_minutes BIGINT NOT NULL,
                ecc_dbe_inc BIGINT NOT NULL,
                ecc_dbe_minutes BIGINT NOT NULL,
                last_minute TIMESTAMPTZ)""",
            "INSERT INTO rollup_marks VALUES ('gpu_ecc_slices', NULL, NULL)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of an open database (0 for an empty one)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Bring the schema to ``LATEST_VERSION``; returns the versions applied."""
    version = current_version(con)
    if version > LATEST_VERSION:
        raise SchemaVersionError(
            f"database schema is version {version}, newer than this orbitwatch ({LATEST_VERSION}); upgrade it"
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        try:
            con.execute("BEGIN TRANSACTION")
            for statement in migration.statements:
                con.execute(statement)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now())",
                [migration.version, migration.description],
            )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise SchemaVersionError(f"migration {migration.version} failed: {exc}") from exc
        applied.append(migration.version)
    return applied
