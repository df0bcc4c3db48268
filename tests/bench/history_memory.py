"""Memory must not grow with history: the frame-key index (the dedup state) as days of frames accumulate.

Writes frames of 100 racks at 1 Hz through the real HistoryWriter (rack rows only: GPU rows add disk,
not dedup state) into a DuckDB file with the daemon's default memory limit, and prints the process's current RSS
and DuckDB's own memory accounting after each simulated 6 hours.

    .venv/bin/python -m tests.bench.history_memory [--days 2] [--racks 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from storage.database import open_database
from storage.writer import BatchToStore, HistoryWriter, PartitionProgress

SECONDS_PER_BATCH = 600


def rack_rows(racks: int, first_second: int, seconds: int, start: datetime) -> pl.DataFrame:
    """``seconds`` frames of each rack from ``first_second`` on, in the rack_frames layout."""
    n = racks * seconds
    seq = pl.int_range(first_second, first_second + seconds, eager=True).repeat_by(racks).explode()
    rack = pl.Series([f"sat-{r // 4 + 1:04d}/rack-{r % 4 + 1}" for r in range(racks)] * seconds)
    sampled = pl.datetime_range(start, start + timedelta(seconds=seconds - 1), "1s", eager=True, time_zone="UTC")
    return pl.DataFrame(
        {
            "rack_id": rack,
            "boot_epoch": pl.Series([1] * n, dtype=pl.Int32),
            "frame_seq": seq,
            "satellite_id": rack.str.slice(0, 8),
            "sampled_at": sampled.repeat_by(racks).explode() + timedelta(seconds=first_second),
            "stored": False,
            "firmware": "fw",
            "ground_station": None,
            "in_eclipse": False,
            "invalid_mask": pl.Series([0] * n, dtype=pl.Int32),
            "schema_id": 2,
            "kafka_partition": pl.Series([0] * n, dtype=pl.Int32),
            "kafka_offset": pl.int_range(0, n, eager=True),
        }
    ).with_columns(pl.col("sampled_at").alias("received_at"))


def main() -> None:
    """Accumulate history and print RSS as it grows."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--racks", type=int, default=100)
    parser.add_argument("--memory-limit", default="512MB", help="DuckDB memory_limit (the daemon's default)")
    args = parser.parse_args()
    db = Path(tempfile.mkdtemp()) / "history.duckdb"
    con = open_database(db, memory_limit=args.memory_limit)
    writer = HistoryWriter(con)
    no_gpus = con.sql("SELECT * FROM gpu_samples LIMIT 0").pl()
    no_dead = con.sql("SELECT * FROM dead_letters LIMIT 0").pl()
    rack_schema = con.sql("SELECT * FROM rack_frames LIMIT 0").pl().schema
    start = datetime(2026, 11, 1, tzinfo=UTC)
    readings: list[dict[str, float]] = []
    began = time.perf_counter()
    for first in range(0, int(args.days * 86_400), SECONDS_PER_BATCH):
        rows = rack_rows(args.racks, first, SECONDS_PER_BATCH, start)
        rows = rows.with_columns(
            pl.lit(None, dtype).alias(c) for c, dtype in rack_schema.items() if c not in rows.columns
        )
        writer.write(BatchToStore("bench", rows, no_gpus, no_dead, {0: PartitionProgress(first + 1, rows.height)}))
        done = first + SECONDS_PER_BATCH
        if done % (6 * 3600) == 0:
            reading = {"hours": done / 3600, "frames": done * args.racks, "rss_mib": _rss_mib()}
            reading["duckdb_mib"] = _duckdb_mib(con)
            readings.append(reading)
            print(
                f"{reading['hours']:5.0f} h of history, {reading['frames']:>11,.0f} frames: "
                f"RSS {reading['rss_mib']:.0f} MiB, DuckDB memory {reading['duckdb_mib']:.0f} MiB",
                flush=True,
            )
    con.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {"readings": readings, "seconds": round(time.perf_counter() - began, 1), "peak_rss_mib": round(peak)}
    summary["db_mib"] = round(db.stat().st_size / 2**20)
    print(json.dumps(summary))


def _rss_mib() -> float:
    """Current resident set size (not the peak)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * resource.getpagesize() / 2**20, 1)


def _duckdb_mib(con: duckdb.DuckDBPyConnection) -> float:
    row = con.execute("SELECT sum(memory_usage_bytes) / 2 ** 20 FROM duckdb_memory()").fetchone()
    return round(float(row[0]), 1) if row else 0.0


if __name__ == "__main__":
    main()
