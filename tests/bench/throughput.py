"""Sustained throughput of one daemon process from a Kafka backlog to committed DuckDB rows, measured side
by side in one run against (a) the ceiling of only consuming and decoding the same messages and (b) the
backbone alone (raw rows only, derived tables off), so the cost of processing is a ratio of neighbours.

    .venv/bin/python -m tests.bench.throughput [--racks 40] [--seconds 900] [--runs 3]
"""

from __future__ import annotations

import argparse
import json

from tests.bench.common import backlog, broker, median, run_child


def main() -> None:
    """Produce a backlog once, then alternate consume-only and daemon runs over it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--racks", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=900, help="simulated seconds of frames per rack")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4000)
    args = parser.parse_args()
    with broker() as servers:
        messages, samples = backlog(servers, "bench-throughput", args.racks, args.seconds)
        print(f"backlog: {messages} messages, {samples:,} GPU samples")
        consume, backbone, daemon = [], [], []
        for run in range(args.runs):
            common = ["--servers", servers, "--topic", "bench-throughput", "--messages", str(messages)]
            common += ["--batch", str(args.batch)]
            consume.append(run_child("tests.bench.ingest_child", "consume", *common))
            backbone.append(run_child("tests.bench.ingest_child", "backbone", *common))
            daemon.append(run_child("tests.bench.ingest_child", "daemon", *common))
            print(
                f"run {run + 1}: consume+decode {consume[-1]['samples_per_s']:,.0f}/s, "
                f"backbone {backbone[-1]['samples_per_s']:,.0f}/s, "
                f"daemon with processing {daemon[-1]['samples_per_s']:,.0f}/s, "
                f"daemon peak RSS {daemon[-1]['peak_rss_mib']:.0f} MiB"
            )
        ceiling = median([r["samples_per_s"] for r in consume])
        end_to_end = median([r["samples_per_s"] for r in daemon])
        ratios = [d["samples_per_s"] / c["samples_per_s"] for c, d in zip(consume, daemon, strict=True)]
        kept = [d["samples_per_s"] / b["samples_per_s"] for b, d in zip(backbone, daemon, strict=True)]
        summary = {
            "backlog_samples": samples,
            "consume_decode_samples_per_s_median": round(ceiling),
            "backbone_samples_per_s_median": round(median([r["samples_per_s"] for r in backbone])),
            "daemon_samples_per_s_median": round(end_to_end),
            "daemon_vs_ceiling_median": round(median(ratios), 3),
            "daemon_vs_backbone_median": round(median(kept), 3),
            "processing_cost_median": round(1 - median(kept), 3),
            "daemon_peak_rss_mib_median": round(median([d["peak_rss_mib"] for d in daemon])),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
