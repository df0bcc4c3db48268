"""Latency from produce to queryable at a steady live rate (default 100 racks, one frame per rack per second).

A daemon runs as its own process; the simulator's frames are sent in real time (contact: continuous),
each stamped with its real send time. Latency of a frame = ``ingested_at`` (stamped as its batch's
DuckDB transaction starts; the commit follows within that batch's write, a few milliseconds at this
rate) minus that Kafka timestamp.

    .venv/bin/python -m tests.bench.latency [--racks 100] [--seconds 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from kafka import KafkaProducer

from ingest.admin import create_topic
from simulator.config import SimulationConfig
from simulator.messages import SimMessage, generate
from tests.bench.common import PARTITIONS, broker, median

LATENCY_SQL = """
SELECT quantile_cont(ms, 0.5), quantile_cont(ms, 0.99), max(ms), count(*)
FROM (SELECT date_diff('microsecond', received_at, ingested_at) / 1000.0 AS ms FROM rack_frames)"""


def one_run(servers: str, racks: int, seconds: int) -> dict[str, float]:
    """Start a daemon, send ``seconds`` of live frames from ``racks`` racks, return latency percentiles."""
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    create_topic(servers, topic, PARTITIONS)
    home = Path(tempfile.mkdtemp())
    env = {
        **os.environ,
        "ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS": servers,
        "ORBITWATCH_KAFKA__TOPIC": topic,
        "ORBITWATCH_KAFKA__GROUP_ID": topic,
        "ORBITWATCH_KAFKA__STATIC_PARTITIONS": json.dumps(list(range(PARTITIONS))),
        "ORBITWATCH_STORAGE__PATH": str(home / "latency.duckdb"),
        "ORBITWATCH_DAEMON__LIVENESS_FILE": str(home / "alive"),
        "ORBITWATCH_DAEMON__METRICS_PORT": "null",
        "ORBITWATCH_DAEMON__POLL_TIMEOUT_MS": "100",
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orbitwatch.cli", "run", "--exit-when-idle", "3"], env=env, stderr=subprocess.DEVNULL
    )
    while not (home / "alive").exists():
        time.sleep(0.1)
    config = SimulationConfig(
        satellites=racks // 4,
        racks_per_satellite=4,
        duration_s=seconds,
        contact="continuous",
        start=datetime.now(UTC),
        duplicate_rate=0.0,
        loss_rate=0.0,
        seed=3,
    )
    messages, _truth = generate(config)
    send_live(messages, servers, topic)
    daemon.wait(timeout=120)
    with duckdb.connect(str(home / "latency.duckdb"), read_only=True) as con:
        row = con.execute(LATENCY_SQL).fetchone()
    assert row is not None
    p50, p99, worst, frames = row
    return {"p50_ms": p50, "p99_ms": p99, "max_ms": worst, "frames": frames}


def send_live(messages: Iterator[SimMessage], servers: str, topic: str) -> None:
    """Send each message when its simulated second comes, stamped with the real send time."""
    producer = KafkaProducer(bootstrap_servers=servers, linger_ms=5, acks=1)
    started, first_ms = time.monotonic(), None
    for message in messages:
        first_ms = message.timestamp_ms if first_ms is None else first_ms
        delay = started + (message.timestamp_ms - first_ms) / 1000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.send(topic, key=message.key, value=message.value, timestamp_ms=int(time.time() * 1000))
    producer.flush()
    producer.close()


def main() -> None:
    """Several runs; prints each and the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--racks", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with broker() as servers:
        for i in range(args.runs):
            runs.append(one_run(servers, args.racks, args.seconds))
            r = runs[-1]
            print(
                f"run {i + 1}: {r['frames']:.0f} frames, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, "
                f"max {r['max_ms']:.0f} ms",
                flush=True,
            )
    summary = {k: round(median([r[k] for r in runs]), 1) for k in ("p50_ms", "p99_ms", "max_ms")}
    print(json.dumps({"racks": args.racks, "runs": args.runs, **summary}))


if __name__ == "__main__":
    main()
