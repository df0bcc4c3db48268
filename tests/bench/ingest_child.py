"""One measured run in a fresh process: `consume` (Kafka + decode only), `backbone` (the daemon storing raw
rows only, ``processing.enabled = false``) or `daemon` (the full daemon: raw rows and derived tables).

Reads the partitions of shard ``--shard`` of ``--shards`` until ``--messages`` are read, or, without it,
until nothing arrived for 3 s. Prints one JSON line: samples, seconds (first to last data), the wall-clock
first/last data times (to combine shards running side by side), samples_per_s, peak_rss_mib.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ingest.codec import FrameDecoder
from ingest.registry import SchemaRegistry
from ingest.source import KafkaSource, NoHistory
from orbitwatch.daemon import Daemon
from orbitwatch.settings import Settings, load_settings

IDLE_S = 3.0
Step = Callable[[], tuple[int, int] | None]  # one poll: (messages, samples) or None when nothing came


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        None,
        kafka={
            "bootstrap_servers": args.servers,
            "topic": args.topic,
            "shard_index": args.shard,
            "shard_count": args.shards,
            # A fresh group per run: offsets committed by an earlier run must not skip the backlog.
            "group_id": f"bench-{uuid.uuid4().hex}",
        },
        storage={"path": str(Path(tempfile.mkdtemp()) / "bench.duckdb")},
        daemon={"metrics_port": None, "liveness_file": None, "max_batch_messages": args.batch},
        query={"port": 0},
        processing={"enabled": args.mode == "daemon"},
    )


def consume_step(settings: Settings) -> tuple[Step, Callable[[], None]]:
    """Poll and decode only."""
    source = KafkaSource(settings.kafka, NoHistory())
    decoder = FrameDecoder(SchemaRegistry(settings.registry.contract_dir))

    def step() -> tuple[int, int] | None:
        raw = source.poll(200, settings.daemon.max_batch_messages, settings.daemon.poll_top_up_ms)
        if not raw:
            return None
        return len(raw), int(decoder.decode(raw).frames["gpus"].list.len().sum())

    return step, source.close


def daemon_step(settings: Settings) -> tuple[Step, Callable[[], None]]:
    """The daemon's whole batch flow, to rows committed in DuckDB and offsets in Kafka."""
    daemon = Daemon(settings)

    def step() -> tuple[int, int] | None:
        result = daemon.run_batch()
        return None if result is None else (result.messages, result.stored.samples_stored)

    return step, daemon.close


def measure(step: Step, expected: int | None) -> dict[str, float]:
    """Run ``step`` until the expected messages or idleness; time from the poll of the first data to the last."""
    messages = samples = 0
    first = last = None
    idle_since = time.monotonic()
    while (expected is None or messages < expected) and time.monotonic() - idle_since < IDLE_S:
        polled = time.time()
        got = step()
        if got is None:
            if first is None:
                idle_since = time.monotonic()  # still waiting for the first data
            continue
        first = first or polled  # from the poll that brought the first data (a tiny backlog is one batch)
        last, idle_since = time.time(), time.monotonic()
        messages, samples = messages + got[0], samples + got[1]
    if first is None or last is None:
        raise SystemExit("no data arrived")
    seconds = last - first
    return {"samples": samples, "seconds": seconds, "first": first, "last": last, "samples_per_s": samples / seconds}


def main() -> None:
    """Parse arguments, run, print the JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["consume", "backbone", "daemon"])
    parser.add_argument("--servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()
    settings = _settings(args)
    step, close = (consume_step if args.mode == "consume" else daemon_step)(settings)
    result = measure(step, args.messages)
    close()
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
