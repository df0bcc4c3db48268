"""`make bench`: every benchmark in turn, each printing its own figures (medians of several runs)."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    ("throughput: daemon vs backbone alone vs consume+decode ceiling (2.3M samples)", ["tests.bench.throughput"]),
    ("peak RSS vs backlog size (4.6M samples)", ["tests.bench.throughput", "--seconds", "1800", "--runs", "1"]),
    ("latency at 100 racks live", ["tests.bench.latency"]),
    ("memory as history accumulates (100 racks, 4 days)", ["tests.bench.history_memory", "--days", "4"]),
    ("1, 2 and 3 daemons side by side (static shards)", ["tests.bench.scaling"]),
    ("late-data recompute over 1 day vs 7 days of history", ["tests.bench.late_recompute"]),
    ("alerting: ingestion throughput with the webhook up vs down (503, retried)", ["tests.bench.alert_outage"]),
    ("alerting: latency from a frame in Kafka to the webhook call, 100 racks live", ["tests.bench.alert_latency"]),
    # Both build the 30-day, 1,000-rack history into /tmp/ow-bench/h30 first if it is missing (about 5 min,
    # about 15 GB) and need as much again free for a working copy.
    (
        "saved queries over 30 days x 1,000 racks: p50/p95 idle, during live and during backlog ingestion",
        ["tests.bench.query_latency", "--runs", "2", "--rounds", "10", "--live-seconds", "60"],
    ),
    (
        "4 query clients during backlog ingestion: errors, consistency, throughput vs alone",
        ["tests.bench.query_concurrency", "--runs", "2", "--backlog-seconds", "600"],
    ),
]


def main() -> None:
    """Run each benchmark as its own process and stream its output."""
    for title, args in BENCHMARKS:
        print(f"\n== {title}", flush=True)
        subprocess.run([sys.executable, "-m", *args], check=True)


if __name__ == "__main__":
    main()
