"""Alert latency: from a frame's arrival in Kafka to the webhook call, at a live rate of 100 racks.

A daemon with a rules file runs as its own process (like ``tests.bench.latency``); the simulator's frames
are sent in real time (one frame per rack per second, contact continuous), each stamped with its real send
time as Kafka timestamp. ``--faults`` racks get a fault on one GPU at a known second of the run, on
distinct racks at staggered moments, half of them an overheating GPU (``gpu_overheat``: the temperature
ramps up over about 20 s, so they start at least 35 s before the end), half a double-bit ECC error
(``ecc_dbe``: instantaneous, spread over the whole run). Two rules fire at once (``for: 0``) on the
GPU-minute whose ``temp_max`` reaches 90 C (``gpu_hot``) or whose ``ecc_dbe_inc`` is > 0 (``gpu_dbe``),
with one notification group per GPU, so alerts are not coalesced. The webhook is a local HTTP server in
this process, which stamps each request when it has read it (same clock as the producer's timestamps).

Attribution, per alert (its first ``firing`` notification received):

- **from the qualifying frame** (the figure): the alert's window is the first GPU-minute in which the
  condition held; the frame that made it fire is that minute's first qualifying frame (by sample time,
  i.e. by Kafka timestamp for live frames): for ``gpu_hot`` the first sample of the GPU >= 90 C, for
  ``gpu_dbe`` the first sample whose ``ecc_dbe`` counter is above the GPU's previous sample. Before it
  arrived the window did not meet the condition; with ``for: 0`` the batch carrying it fires the alert.
  Latency = receive time - that frame's Kafka timestamp (``rack_frames.received_at``), looked up in the
  database after the run; the frame's minute is checked against the alert's ``event_time`` (window start)
  and a mismatch is counted.
- **from the firing batch's ground clock**: receive time - the alert's ``ground_learned_time``, the ground
  clock of the batch that fired it (the newest Kafka timestamp it stored): the latency from the newest
  frame of that batch, i.e. without the wait for the batch to fill.
- context: produce -> stored of every frame of the run (``ingested_at - received_at``, as
  ``tests.bench.latency``), to compare with that bench without alerting.
- **breakdown** of the first: qualifying frame -> the outbox row's ``created_at`` (the firing batch's
  write time: poll, decode, process, evaluate), and ``created_at`` -> receive (commit, the worker's wake,
  its pass, the POST).

Medians over runs of each run's p50, p99 and max (at 100 racks and 20 faults, a run has about 20 alerts,
so a run's p99 is close to its max).

    .venv/bin/python -m tests.bench.alert_latency [--racks 100] [--seconds 50] [--runs 3] [--faults 20]
        [--ecc-only]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from ingest.admin import create_topic
from simulator.config import NODES_PER_RACK, FaultSpec, SimulationConfig
from simulator.messages import generate
from tests.bench.common import PARTITIONS, broker, median
from tests.bench.latency import send_live
from tests.helpers.rules import write_rules
from tests.helpers.webhook import WebhookReceiver

THRESHOLD_C = 90.0
OVERHEAT_RAMP_S = 35
"""An overheat starts at least this long before the end: its temperature takes about 20 s to reach 90 C."""
RULES = """
rules:
  - name: gpu_hot
    scope: gpu
    threshold: {{column: temp_max, op: ">=", critical: {threshold}}}
    for: 0
    keep_firing_for: 30m
    group_by: [rule, rack_id, node, gpu]
  - name: gpu_dbe
    scope: gpu
    threshold: {{column: ecc_dbe_inc, op: ">", critical: 0}}
    for: 0
    keep_firing_for: 30m
    group_by: [rule, rack_id, node, gpu]
"""
FIRST_FRAME_SQL = {
    "gpu_hot": """
        SELECT f.received_at, g.sampled_at
        FROM gpu_samples g JOIN rack_frames f USING (rack_id, boot_epoch, frame_seq)
        WHERE g.rack_id = $rack AND g.node = $node AND g.gpu = $gpu AND g.temp_c >= $threshold
        ORDER BY g.sampled_at
        LIMIT 1""",
    "gpu_dbe": """
        SELECT f.received_at, g.sampled_at
        FROM (SELECT *, lag(ecc_dbe) OVER (ORDER BY sampled_at) AS previous
              FROM gpu_samples WHERE rack_id = $rack AND node = $node AND gpu = $gpu) g
        JOIN rack_frames f USING (rack_id, boot_epoch, frame_seq)
        WHERE g.ecc_dbe > g.previous
        ORDER BY g.sampled_at
        LIMIT 1""",
}
"""Per rule: the Kafka timestamp and sample time of the GPU's first qualifying frame."""
STORED_SQL = """
SELECT quantile_cont(ms, 0.5), quantile_cont(ms, 0.99)
FROM (SELECT date_diff('microsecond', received_at, ingested_at) / 1000.0 AS ms FROM rack_frames)"""
"""Produce to stored of every frame of the run, as ``tests.bench.latency`` measures it (context)."""
CREATED_SQL = "SELECT min(created_at) FROM alert_outbox WHERE status = 'firing' AND list_contains(fingerprints, ?)"


def faults(racks: int, seconds: int, count: int, ecc_only: bool = False) -> list[FaultSpec]:
    """``count`` faults on distinct racks at staggered seconds: overheats (even) and ECC errors (odd), or
    only ECC errors."""
    specs = []
    count = min(count, racks)
    for i in range(count):
        rack = (i * 37) % racks  # spread over satellites and partitions
        hot = i % 2 == 0 and not ecc_only
        last = seconds - OVERHEAT_RAMP_S if hot else seconds - 8
        start = 5 + (i // 2) * max(last - 5, 0) / max((count + 1) // 2, 1)
        specs.append(
            FaultSpec(
                kind="gpu_overheat" if hot else "ecc_dbe",
                satellite=rack // 4,
                rack=rack % 4,
                node=i % NODES_PER_RACK,
                gpu=(i * 3) % 8,
                start_s=start,
                duration_s=seconds,
            )
        )
    return specs


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 (linear interpolation, as DuckDB's quantile_cont), max."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}

    def q(p: float) -> float:
        pos = p * (len(ordered) - 1)
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    return {"p50": q(0.5), "p99": q(0.99), "max": ordered[-1]}


def one_run(servers: str, webhook: WebhookReceiver, rules: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start a daemon, send live frames with faults, return the alert latencies of the run."""
    topic = f"bench-alert-latency-{uuid.uuid4().hex[:8]}"
    create_topic(servers, topic, PARTITIONS)
    home = Path(tempfile.mkdtemp())
    db = home / "alert-latency.duckdb"
    env = {
        **os.environ,
        "ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS": servers,
        "ORBITWATCH_KAFKA__TOPIC": topic,
        "ORBITWATCH_KAFKA__GROUP_ID": topic,
        "ORBITWATCH_KAFKA__STATIC_PARTITIONS": json.dumps(list(range(PARTITIONS))),
        "ORBITWATCH_STORAGE__PATH": str(db),
        "ORBITWATCH_DAEMON__LIVENESS_FILE": str(home / "alive"),
        "ORBITWATCH_DAEMON__METRICS_PORT": "null",
        "ORBITWATCH_DAEMON__POLL_TIMEOUT_MS": "100",
        "ORBITWATCH_ALERTING__RULES_FILE": str(rules),
    }
    with open(home / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "orbitwatch.cli", "run", "--exit-when-idle", "3"], env=env, stderr=log
        )
    while not (home / "alive").exists():
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited: {(home / 'daemon.log').read_text()[-3000:]}")
        time.sleep(0.1)
    specs = faults(args.racks, args.seconds, args.faults, args.ecc_only)
    config = SimulationConfig(
        satellites=args.racks // 4,
        racks_per_satellite=4,
        duration_s=args.seconds,
        contact="continuous",
        start=datetime.now(UTC),
        duplicate_rate=0.0,
        loss_rate=0.0,
        seed=5,
        faults=specs,
    )
    webhook.take()
    messages, _truth = generate(config)
    send_live(messages, servers, topic)
    daemon.wait(timeout=120)
    time.sleep(0.2)  # a request in flight when the daemon stopped
    received = webhook.take()

    first_firing: dict[str, tuple[float, dict[str, Any]]] = {}
    for request in sorted(received, key=lambda r: r.at):
        at, body = request.at, request.json()
        for alert in body["alerts"]:
            if alert["status"] == "firing" and alert["fingerprint"] not in first_firing:
                first_firing[alert["fingerprint"]] = (at, alert)
    from_frame, from_batch, to_enqueue, from_enqueue, window_mismatch, missing = [], [], [], [], 0, 0
    with duckdb.connect(str(db), read_only=True) as con:
        for at, alert in first_firing.values():
            labels = alert["labels"]
            params: dict[str, object] = {
                "rack": labels["rack_id"],
                "node": int(labels["node"]),
                "gpu": int(labels["gpu"]),
            }
            if labels["rule"] == "gpu_hot":
                params["threshold"] = THRESHOLD_C
            row = con.execute(FIRST_FRAME_SQL[labels["rule"]], params).fetchone()
            if row is None:
                missing += 1
                continue
            received_at, sampled_at = row
            window = datetime.fromisoformat(alert["annotations"]["event_time"])
            if not window <= sampled_at < window + timedelta(minutes=1):
                window_mismatch += 1
            learned = datetime.fromisoformat(alert["annotations"]["ground_learned_time"])
            created = con.execute(CREATED_SQL, [alert["fingerprint"]]).fetchone()
            from_frame.append((at - received_at.timestamp()) * 1000)
            from_batch.append((at - learned.timestamp()) * 1000)
            if created is not None and created[0] is not None:
                to_enqueue.append((created[0].timestamp() - received_at.timestamp()) * 1000)
                from_enqueue.append((at - created[0].timestamp()) * 1000)
        stored = con.execute(STORED_SQL).fetchone()
    frame, batch = percentiles(from_frame), percentiles(from_batch)
    enqueue, deliver = percentiles(to_enqueue), percentiles(from_enqueue)
    return {
        "faults": len(specs),
        "alerts": len(first_firing),
        "notifications": len(received),
        "window_mismatch": window_mismatch,
        "no_qualifying_frame": missing,
        **{f"frame_{k}_ms": v for k, v in frame.items()},
        **{f"batch_{k}_ms": v for k, v in batch.items()},
        **{f"to_enqueue_{k}_ms": v for k, v in enqueue.items()},
        **{f"enqueue_to_webhook_{k}_ms": v for k, v in deliver.items()},
        "stored_p50_ms": stored[0] if stored else float("nan"),
        "stored_p99_ms": stored[1] if stored else float("nan"),
    }


def main() -> None:
    """Several runs; prints each and the medians."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--racks", type=int, default=100)
    parser.add_argument(
        "--seconds", type=int, default=50, help="seconds of live frames per run (>= 40; >= 15 with --ecc-only)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faults", type=int, default=20, help="faulty GPUs per run (distinct racks)")
    parser.add_argument(
        "--ecc-only",
        action="store_true",
        help="every fault an instantaneous ECC error, no overheat ramp (short smoke runs; measures gpu_dbe only)",
    )
    args = parser.parse_args()
    if args.seconds < (15 if args.ecc_only else 40):
        parser.error("need --seconds >= 40 (the overheat ramp), or >= 15 with --ecc-only")
    runs = []
    with broker() as servers, WebhookReceiver() as webhook, tempfile.TemporaryDirectory() as tmp:
        rules = write_rules(Path(tmp), RULES.format(threshold=THRESHOLD_C), webhook_url=webhook.url, timeout_s=5)
        for i in range(args.runs):
            runs.append(one_run(servers, webhook, rules, args))
            r = runs[-1]
            print(
                f"run {i + 1}: {r['alerts']} alerts of {r['faults']} faults ({r['notifications']} notifications); "
                f"from the qualifying frame p50 {r['frame_p50_ms']:.0f} ms, p99 {r['frame_p99_ms']:.0f} ms, "
                f"max {r['frame_max_ms']:.0f} ms; from the firing batch's clock p50 {r['batch_p50_ms']:.0f} ms, "
                f"p99 {r['batch_p99_ms']:.0f} ms; frame -> enqueued p50 {r['to_enqueue_p50_ms']:.0f} ms, "
                f"enqueued -> webhook p50 {r['enqueue_to_webhook_p50_ms']:.0f} ms; "
                f"window mismatches {r['window_mismatch']}; every frame produce -> stored p50 "
                f"{r['stored_p50_ms']:.0f} ms, p99 {r['stored_p99_ms']:.0f} ms",
                flush=True,
            )
    keys = [
        f"{a}_{p}_ms" for a in ("frame", "batch", "to_enqueue", "enqueue_to_webhook") for p in ("p50", "p99", "max")
    ]
    keys += ["stored_p50_ms", "stored_p99_ms"]
    summary = {k: round(median([r[k] for r in runs]), 1) for k in keys}
    totals = {k: sum(r[k] for r in runs) for k in ("alerts", "faults", "window_mismatch", "no_qualifying_frame")}
    print(json.dumps({"racks": args.racks, "seconds": args.seconds, "runs": args.runs, **totals, **summary}))


if __name__ == "__main__":
    main()
