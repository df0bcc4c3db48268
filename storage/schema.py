"""The explicit, versioned DuckDB schema. Each migration runs once, in order, inside a transaction.

Tables (columns are documented in the README):
- ``rack_frames``: one row per distinct frame (rack_id, boot_epoch, frame_seq); the primary key is what
  makes a frame stored once however often it arrives.
- ``gpu_samples``: one row per GPU per stored frame.
- ``dead_letters``: messages that could not be stored, with raw bytes and reason; keyed by coordinates.
- ``kafka_offsets``: per topic partition, the next offset to read and exactly-once counters; written in
  the same transaction as the rows, so it is the truth the consumer seeks to.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from storage.errors import SchemaVersionError


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
