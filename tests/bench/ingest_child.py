"""One measured run in a fresh process: `consume` (Kafka + decode only) or `daemon` (to committed rows).

Prints one JSON line: samples, seconds, samples_per_s, peak_rss_mib.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import uuid
from pathlib import Path

from ingest.codec import FrameDecoder
from ingest.registry import SchemaRegistry
from ingest.settings import load_settings
from ingest.source import KafkaSource


def _settings(servers: str, topic: str, db: Path, batch: int) -> object:
    return load_settings(
        None,
        # A fresh group per run: offsets committed by an earlier run must not skip the backlog.
        kafka={
            "bootstrap_servers": servers,
            "topic": topic,
            "static_partitions": [0, 1, 2, 3],
            "group_id": f"bench-{uuid.uuid4().hex}",
        },
        storage={"path": str(db)},
        daemon={"metrics_port": None, "liveness_file": None, "max_batch_messages": batch},
    )


def consume_only(servers: str, topic: str, expected: int, batch: int) -> tuple[int, float]:
    """Poll and decode every message; returns (samples, seconds)."""
    settings = _settings(servers, topic, Path(tempfile.mkdtemp()) / "unused.duckdb", batch)
    source = KafkaSource(settings.kafka, dict)  # type: ignore[attr-defined]
    decoder = FrameDecoder(SchemaRegistry(settings.registry.contract_dir))  # type: ignore[attr-defined]
    messages = samples = 0
    started = None
    while messages < expected:
        raw = source.poll(500, batch)
        if not raw:
            continue
        started = started or time.perf_counter()
        decoded = decoder.decode(raw)
        samples += int(decoded.frames["gpus"].list.len().sum())
        messages += len(raw)
    seconds = time.perf_counter() - (started or time.perf_counter())
    source.close()
    return samples, seconds


def daemon_run(servers: str, topic: str, expected: int, batch: int) -> tuple[int, float]:
    """Run the daemon's batch flow until every message is committed; returns (samples, seconds)."""
    from ingest.settings import Settings
    from orbitwatch.daemon import Daemon

    settings = _settings(servers, topic, Path(tempfile.mkdtemp()) / "bench.duckdb", batch)
    assert isinstance(settings, Settings)
    daemon = Daemon(settings)
    messages = samples = 0
    started = None
    while messages < expected:
        result = daemon.run_batch()
        if result is None:
            continue
        started = started or time.perf_counter() - 0.0
        messages += result.messages
        samples += result.stored.samples_stored
    seconds = time.perf_counter() - (started or time.perf_counter())
    daemon.close()
    return samples, seconds


def main() -> None:
    """Parse arguments, run, print the JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["consume", "daemon"])
    parser.add_argument("--servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--batch", type=int, default=4000)
    args = parser.parse_args()
    run = consume_only if args.mode == "consume" else daemon_run
    samples, seconds = run(args.servers, args.topic, args.messages, args.batch)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds, "peak_rss_mib": peak_mib}
        )
    )


if __name__ == "__main__":
    main()
