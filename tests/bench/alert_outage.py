"""Ingestion throughput of the daemon with alerting on: webhook up vs webhook down, side by side in one run.

A backlog of a continuous-contact fleet with injected faults (overheating GPUs and double-bit ECC errors on
many racks, at staggered times) is produced once; a small rules file (written to a temp dir) raises
notifications on them, one group per rack, routed to a webhook served by this (parent) process. Each run
measures two fresh daemon processes over the whole backlog (own database, own consumer group): webhook
*up* (200) and webhook *down* (503 to every request, retried with a short backoff so the worker keeps
retrying during the measurement). The order of the two alternates between runs.

A child is this module with ``child``: the daemon's batch flow (``Daemon.run_batch``, as
``tests.bench.ingest_child`` measures it) with its delivery worker started as ``Daemon.run`` starts it;
throughput is GPU samples from the first to the last batch with data. At the end of ingestion it reports
the outbox (delivered, pending, failed, attempts). The parent counts the requests its server answered.

Issue target: throughput during the outage within 10% of normal (printed, not asserted).

    .venv/bin/python -m tests.bench.alert_outage [--racks 40] [--seconds 900] [--runs 3] [--faults 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import duckdb

from ingest.admin import create_topic
from orbitwatch.daemon import Daemon
from orbitwatch.settings import load_settings
from simulator.config import FaultSpec, SimulationConfig
from simulator.messages import generate
from simulator.produce import produce
from tests.bench.common import PARTITIONS, broker, median
from tests.bench.ingest_child import measure
from tests.helpers.rules import write_rules
from tests.helpers.webhook import WebhookReceiver

TOPIC = "bench-alert-outage"
RULES = """
rules:
  - name: gpu_temperature
    scope: gpu
    threshold: {column: temp_max, op: ">=", critical: 90}
    keep_firing_for: 1m
    group_by: [rule, rack_id]
  - name: gpu_double_bit_ecc
    scope: gpu
    threshold: {column: ecc_dbe_inc, op: ">", critical: 0}
    keep_firing_for: 2m
    group_by: [rule, rack_id]
"""


def faulty_backlog(servers: str, racks: int, seconds: int, faults: int) -> tuple[int, int]:
    """Produce the fleet's backlog with ``faults`` overheats and ``faults // 2`` ECC faults; (messages, samples)."""
    sats, per_sat = max(racks // 4, 1), 4
    specs = []
    for i in range(faults):  # an overheat on a different rack every few minutes of the backlog
        sat, rack = divmod(i % (sats * per_sat), per_sat)
        start = 60 + (i * (seconds - 240)) // max(faults, 1)
        specs.append(
            FaultSpec(
                kind="gpu_overheat", satellite=sat, rack=rack, node=i % 8, gpu=i % 8, start_s=start, duration_s=120
            )
        )
    for i in range(faults // 2):
        sat, rack = divmod((i * 3 + 1) % (sats * per_sat), per_sat)
        start = 90 + (i * (seconds - 300)) // max(faults // 2, 1)
        specs.append(
            FaultSpec(
                kind="ecc_dbe",
                satellite=sat,
                rack=rack,
                node=(i + 2) % 8,
                gpu=(i + 5) % 8,
                start_s=start,
                duration_s=60,
            )
        )
    config = SimulationConfig(
        satellites=sats,
        racks_per_satellite=per_sat,
        duration_s=seconds,
        contact="continuous",
        seed=7,
        duplicate_rate=0.0,
        loss_rate=0.0,
        faults=specs,
    )
    create_topic(servers, TOPIC, PARTITIONS)
    messages, truth = generate(config)
    sent = produce(messages, servers, TOPIC)
    return sent, truth.distinct_frames_sent * 64


def run_child(*args: str) -> dict[str, float]:
    """Run this module's ``child`` in a fresh process (its stderr shown) and parse the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.alert_outage", "child", *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def child(args: argparse.Namespace) -> None:
    """One measured daemon over the backlog with alerting on; prints one JSON line."""
    db = Path(tempfile.mkdtemp()) / "bench.duckdb"
    settings = load_settings(
        None,
        kafka={"bootstrap_servers": args.servers, "topic": args.topic, "group_id": f"bench-{uuid.uuid4().hex}"},
        storage={"path": str(db)},
        daemon={"metrics_port": None, "liveness_file": None, "max_batch_messages": args.batch},
        query={"enabled": False},
        processing={"enabled": True},
        alerting={
            "rules_file": args.rules,
            "base_backoff_s": args.base_backoff,
            "max_backoff_s": args.max_backoff,
            "max_attempts": args.max_attempts,
        },
    )
    logging.getLogger("alerting.delivery").setLevel(logging.ERROR)  # one warning per failed attempt otherwise
    daemon = Daemon(settings)
    assert daemon.delivery is not None, "alerting is not on"
    daemon.services.start()  # as Daemon.run does (delivery, retention); run_batch wakes delivery after each commit

    def step() -> tuple[int, int] | None:
        result = daemon.run_batch()
        return None if result is None else (result.messages, result.stored.samples_stored)

    try:
        result = measure(step, args.messages)
    finally:
        daemon.close()  # stops the worker after its pass in progress
    with duckdb.connect(str(db), read_only=True) as con:
        counts = dict(con.execute("SELECT state, count(*) FROM alert_outbox GROUP BY state").fetchall())
        attempts = con.execute("SELECT coalesce(sum(attempts), 0) FROM alert_outbox").fetchone()
    result.update({f"outbox_{s}": float(counts.get(s, 0)) for s in ("delivered", "pending", "failed")})
    result["outbox_attempts"] = float(attempts[0]) if attempts else 0.0
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def parent(args: argparse.Namespace) -> None:
    """Produce the backlog once, then alternate webhook-up and webhook-down runs over it."""
    with broker() as servers, WebhookReceiver() as webhook, tempfile.TemporaryDirectory() as tmp:
        rules = write_rules(Path(tmp), RULES, webhook_url=webhook.url)
        messages, samples = faulty_backlog(servers, args.racks, args.seconds, args.faults)
        print(f"backlog: {messages} messages, {samples:,} GPU samples, {args.faults + args.faults // 2} faults")
        common = ["--servers", servers, "--topic", TOPIC, "--messages", str(messages), "--batch", str(args.batch)]
        common += ["--rules", str(rules), "--base-backoff", str(args.base_backoff)]
        common += ["--max-backoff", str(args.max_backoff), "--max-attempts", str(args.max_attempts)]
        runs: dict[str, list[dict[str, float]]] = {"up": [], "down": []}
        for run in range(args.runs):
            for mode in ("up", "down") if run % 2 == 0 else ("down", "up"):
                webhook.answer = 200 if mode == "up" else 503  # 503 to every request: down
                webhook.take()  # the counts are this run's
                result = run_child(*common)
                result["requests_accepted"] = len(webhook.accepted())
                result["requests_refused"] = len(webhook.refused())
                runs[mode].append(result)
            up, down = runs["up"][-1], runs["down"][-1]
            print(
                f"run {run + 1}: webhook up {up['samples_per_s']:,.0f}/s "
                f"(delivered {up['outbox_delivered']:.0f}, pending {up['outbox_pending']:.0f}), "
                f"webhook down {down['samples_per_s']:,.0f}/s "
                f"(delivered {down['outbox_delivered']:.0f}, pending {down['outbox_pending']:.0f}, "
                f"{down['requests_refused']:.0f} refused attempts), "
                f"ratio {down['samples_per_s'] / up['samples_per_s']:.3f}",
                flush=True,
            )
        up_rate = median([r["samples_per_s"] for r in runs["up"]])
        down_rate = median([r["samples_per_s"] for r in runs["down"]])
        ratios = [d["samples_per_s"] / u["samples_per_s"] for u, d in zip(runs["up"], runs["down"], strict=True)]
        print(
            f"median: webhook up {up_rate:,.0f} samples/s, webhook down {down_rate:,.0f} samples/s, "
            f"down/up {median(ratios):.3f} (per-run {', '.join(f'{r:.3f}' for r in ratios)}; target >= 0.90)"
        )

        def med(mode: str, key: str) -> float:
            return median([r[key] for r in runs[mode]])

        summary = {
            "backlog_samples": samples,
            "runs": args.runs,
            "up_samples_per_s_median": round(up_rate),
            "down_samples_per_s_median": round(down_rate),
            "down_vs_up_median": round(median(ratios), 3),
            "down_vs_up_runs": [round(r, 3) for r in ratios],
            "up_notifications_delivered_median": med("up", "outbox_delivered"),
            "up_notifications_pending_median": med("up", "outbox_pending"),
            "down_notifications_delivered_median": med("down", "outbox_delivered"),
            "down_notifications_pending_median": med("down", "outbox_pending"),
            "down_refused_attempts_median": med("down", "requests_refused"),
        }
        print(json.dumps(summary))


def main() -> None:
    """``child`` runs one measured daemon; without it, the whole comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("child", help="one measured daemon (used by the parent)")
    run.add_argument("--servers", required=True)
    run.add_argument("--topic", required=True)
    run.add_argument("--messages", type=int, required=True)
    run.add_argument("--batch", type=int, default=4000)
    run.add_argument("--rules", required=True)
    for p in (parser, run):
        p.add_argument("--base-backoff", type=float, default=0.2, help="alerting.base_backoff_s")
        p.add_argument("--max-backoff", type=float, default=1.0, help="alerting.max_backoff_s")
        p.add_argument("--max-attempts", type=int, default=100, help="alerting.max_attempts")
    parser.add_argument("--racks", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=900, help="simulated seconds of frames per rack")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--faults", type=int, default=20, help="overheating GPUs (plus half as many ECC faults)")
    args = parser.parse_args()
    (child if args.command == "child" else parent)(args)


if __name__ == "__main__":
    main()
