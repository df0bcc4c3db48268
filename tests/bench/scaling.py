"""Total throughput of 1, 2 and 3 daemons side by side on the same backlog (12 partitions, static shards).

Each daemon is its own process owning partitions p % n == k; total = all samples / (last data of any
daemon - first data of any daemon).

    .venv/bin/python -m tests.bench.scaling [--racks 40] [--seconds 900] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from tests.bench.common import backlog, broker, median

PARTITIONS = 12


def side_by_side(servers: str, topic: str, daemons: int) -> float:
    """Run ``daemons`` shards at once over the topic; total samples per second."""
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.ingest_child",
                "daemon",
                "--servers",
                servers,
                "--topic",
                topic,
                "--shard",
                str(k),
                "--shards",
                str(daemons),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(daemons)
    ]
    results: list[dict[str, float]] = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    span = max(r["last"] for r in results) - min(r["first"] for r in results)
    return float(sum(r["samples"] for r in results) / span)


def main() -> None:
    """Produce one backlog, then alternate 1, 2 and 3 daemons over it, several times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--racks", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=900)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    figures: dict[int, list[float]] = {1: [], 2: [], 3: []}
    with broker() as servers:
        _messages, samples = backlog(servers, "bench-scaling", args.racks, args.seconds, partitions=PARTITIONS)
        print(f"backlog: {samples:,} GPU samples in {PARTITIONS} partitions")
        for run in range(args.runs):
            for daemons, values in figures.items():
                values.append(side_by_side(servers, "bench-scaling", daemons))
                print(f"run {run + 1}: {daemons} daemon(s) {values[-1]:,.0f} samples/s", flush=True)
    summary = {f"{n}_daemons_samples_per_s_median": round(median(v)) for n, v in figures.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
