"""Shared pieces of the benchmarks: a broker, a produced backlog, medians."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest.admin import create_topic
from orbitwatch.broker import EmbeddedBroker
from simulator.config import SimulationConfig
from simulator.messages import generate
from simulator.produce import produce

PARTITIONS = 4


@contextmanager
def broker() -> Iterator[str]:
    """Bootstrap servers: ORBITWATCH_TEST_BOOTSTRAP if set, else a fresh embedded broker."""
    external = os.environ.get("ORBITWATCH_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap_servers


def backlog(
    servers: str, topic: str, racks: int, seconds: int, seed: int = 1, partitions: int = PARTITIONS
) -> tuple[int, int]:
    """Produce a continuous-contact fleet backlog; returns (messages, GPU samples)."""
    config = SimulationConfig(
        satellites=racks // 4,
        racks_per_satellite=4,
        duration_s=seconds,
        contact="continuous",
        seed=seed,
        duplicate_rate=0.0,
        loss_rate=0.0,
    )
    create_topic(servers, topic, partitions)
    messages, truth = generate(config)
    sent = produce(messages, servers, topic)
    return sent, truth.distinct_frames_sent * 64


def run_child(module: str, *args: str) -> dict[str, float]:
    """Run ``python -m module args`` in a fresh process and parse the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args], check=False, capture_output=True, text=True, cwd=Path.cwd()
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-5000:])
        raise SystemExit(f"python -m {module} {' '.join(args)} exited with {out.returncode} (its stderr above)")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)
