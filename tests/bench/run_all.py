"""`make bench` and `make bench-smoke`: every benchmark in turn, each printing its own figures.

``make bench`` runs each with the settings its figures in the README come from (medians of several runs;
takes a long while). ``make bench-smoke`` (``--smoke``, part of CI) runs every benchmark script on a tiny
backlog, a few seconds each, two at a time: it proves each one still runs to its end and prints its figures (the JSON
summary on its last line), so a benchmark that crashes fails the build. Smoke figures measure nothing.

    .venv/bin/python -m tests.bench.run_all [--smoke] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SMOKE_TIMEOUT_S = 120  # per benchmark; they take seconds each
SMOKE_PARALLEL = 2  # smoke runs at a time: their figures measure nothing, so they may share the 2 cores
TINY_HISTORY = ["--dataset", "{tmp}/h"]  # the query benches' smoke history (each copies it to its own --work)


@dataclass(frozen=True, slots=True)
class Benchmark:
    """One benchmark script: its title, module, the full run's arguments and the smoke run's.

    ``{tmp}`` in an argument is the smoke run's scratch directory.
    """

    name: str
    title: str
    module: str
    full: list[str]
    smoke: list[str]
    needs: str | None = None
    """A benchmark whose smoke run must come first (it builds what this one reads)."""


BENCHMARKS = [
    Benchmark(
        "throughput",
        "throughput: daemon vs backbone alone vs consume+decode ceiling (2.3M samples)",
        "tests.bench.throughput",
        [],
        ["--racks", "8", "--seconds", "30", "--runs", "1"],
    ),
    Benchmark(
        "throughput-rss",
        "peak RSS vs backlog size (4.6M samples)",
        "tests.bench.throughput",
        ["--seconds", "1800", "--runs", "1"],
        [],  # the same script as above: smoked once
    ),
    Benchmark(
        "fleet-shape",
        "fleet shapes side by side: 40/1,000/5,000 racks in order, late passes + duplicates, shuffled (2.3M samples)",
        "tests.bench.fleet_shape",
        ["--runs", "3"],
        # shape (c) needs 5,000 racks x 64 GPUs = 320k samples for one frame per rack
        ["--samples", "400000", "--runs", "1"],
    ),
    Benchmark(
        "latency",
        "latency at 100 racks live",
        "tests.bench.latency",
        [],
        ["--racks", "8", "--seconds", "8", "--runs", "1"],
    ),
    Benchmark(
        "history-memory",
        "memory as history accumulates (100 racks, 4 days)",
        "tests.bench.history_memory",
        ["--days", "4"],
        ["--racks", "4", "--days", "0.25"],
    ),
    Benchmark(
        "scaling",
        "1, 2 and 3 daemons side by side (static shards)",
        "tests.bench.scaling",
        [],
        ["--racks", "8", "--seconds", "30", "--runs", "1"],
    ),
    Benchmark(
        "late-recompute",
        "late-data recompute over 1 day vs 7 days of history",
        "tests.bench.late_recompute",
        [],
        ["--racks", "1", "--days", "2", "--runs", "1", "--late-minutes", "10", "--frame-interval-s", "20"],
    ),
    Benchmark(
        "alert-outage",
        "alerting: ingestion throughput with the webhook up vs down (503, retried)",
        "tests.bench.alert_outage",
        [],
        ["--racks", "8", "--seconds", "120", "--runs", "1", "--faults", "2"],
    ),
    Benchmark(
        "alert-latency",
        "alerting: latency from a frame in Kafka to the webhook call, 100 racks live",
        "tests.bench.alert_latency",
        [],
        ["--racks", "8", "--seconds", "15", "--runs", "1", "--faults", "2", "--ecc-only"],
    ),
    # The query benches build the 30-day, 1,000-rack history into /tmp/ow-bench/h30 first if it is missing
    # (about 5 min, about 15 GB) and need as much again free for a working copy. Their smoke runs build a
    # tiny history (8 racks, 2 days) with the same builder.
    Benchmark(
        "history-30d",
        "the 30-day, 1,000-rack history the query benches read (built once, cached)",
        "tests.bench.history_30d",
        ["--out", "/tmp/ow-bench/h30"],
        ["--out", "{tmp}/h", "--racks", "8", "--days", "2", "--dense-days", "1"],
    ),
    Benchmark(
        "query-latency",
        "saved queries over 30 days x 1,000 racks: p50/p95 idle, during live and during backlog ingestion",
        "tests.bench.query_latency",
        ["--runs", "2", "--rounds", "10", "--live-seconds", "60"],
        [
            *TINY_HISTORY,
            "--work",
            "{tmp}/w-latency",
            "--runs",
            "1",
            "--rounds",
            "2",
            "--live-seconds",
            "6",
            "--backlog-seconds",
            "60",
        ],
        needs="history-30d",
    ),
    Benchmark(
        "query-concurrency",
        "4 query clients during backlog ingestion: errors, consistency, throughput vs alone",
        "tests.bench.query_concurrency",
        ["--runs", "2", "--backlog-seconds", "600"],
        # --set: the tiny backlog in several batches, so that it has a rate to measure
        [
            *TINY_HISTORY,
            "--work",
            "{tmp}/w-concurrency",
            "--runs",
            "1",
            "--backlog-seconds",
            "120",
            "--no-warmup",
            "--set",
            "DAEMON__MAX_BATCH_MESSAGES=100",
        ],
        needs="history-30d",
    ),
    Benchmark(
        "web-view",
        "web view in headless Chromium, 1,000 racks live: fleet and 7-day rack page loads, commit to page shown",
        "tests.bench.web_view",
        [],
        [*TINY_HISTORY, "--work", "{tmp}/w-web", "--runs", "1", "--rounds", "2", "--live-seconds", "12"],
        needs="history-30d",
    ),
]


def figures(stdout: str) -> dict[str, object]:
    """The JSON summary a benchmark prints on its last line; ValueError when it printed none or no number."""
    lines = stdout.strip().splitlines()
    if not lines:
        raise ValueError("printed nothing")
    try:
        summary = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"its last line is not its JSON summary: {lines[-1][:200]!r}") from exc
    if not isinstance(summary, dict) or not summary:
        raise ValueError(f"its summary is not a JSON object with figures: {lines[-1][:200]!r}")
    numbers = [v for v in summary.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers or all(isinstance(v, float) and math.isnan(v) for v in numbers):
        raise ValueError(f"its summary has no figure: {lines[-1][:200]!r}")
    return summary


def run_full(benchmarks: list[Benchmark]) -> None:
    """Run each benchmark as its own process and stream its output; stop at the first that fails."""
    for bench in benchmarks:
        print(f"\n== {bench.title}", flush=True)
        subprocess.run([sys.executable, "-m", bench.module, *bench.full], check=True)


def run_smoke(benchmarks: list[Benchmark], parallel: int = SMOKE_PARALLEL) -> int:
    """Run each benchmark on a tiny backlog, ``parallel`` at a time; returns how many failed (crashed, timed
    out, printed no figures). A benchmark waits for the one it ``needs``, and fails if that one failed."""
    tmp = Path(tempfile.mkdtemp(prefix="ow-bench-smoke-"))
    began = time.monotonic()
    smoked = [b for b in benchmarks if b.smoke]
    outcomes: dict[str, Future[bool]] = {}
    try:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            for bench in smoked:  # in list order: what a benchmark needs is submitted (so started) before it
                needed = outcomes.get(bench.needs) if bench.needs else None
                outcomes[bench.name] = pool.submit(_smoke_one, bench, tmp, needed)
            failed = [name for name, outcome in outcomes.items() if not outcome.result()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"bench smoke: {len(smoked) - len(failed)} passed, {len(failed)} failed in {time.monotonic() - began:.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return len(failed)


_print_lock = threading.Lock()


def _report(*blocks: str) -> None:
    with _print_lock:
        print(*blocks, sep="\n", flush=True)


def _smoke_one(bench: Benchmark, tmp: Path, needed: Future[bool] | None) -> bool:
    """One smoke run; prints its outcome in one block (runs interleave); True when it passed."""
    if needed is not None and not needed.result():
        _report(f"== {bench.name}: FAILED: {bench.needs}, which it needs, failed")
        return False
    args = [a.replace("{tmp}", str(tmp)) for a in bench.smoke]
    command = f"== {bench.name}: python -m {bench.module} {' '.join(args)}"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", bench.module, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=SMOKE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        _report(command, f"   FAILED: still running after {SMOKE_TIMEOUT_S} s")
        return False
    seconds = time.monotonic() - started
    try:
        if done.returncode != 0:
            raise ValueError(f"exit code {done.returncode}")
        summary = figures(done.stdout)
    except ValueError as exc:
        _report(
            command,
            f"   FAILED after {seconds:.1f} s: {exc}",
            _tail(done.stdout, "stdout"),
            _tail(done.stderr, "stderr"),
        )
        return False
    _report(command, f"   ok in {seconds:.1f} s: {json.dumps(summary)[:300]}")
    return True


def _tail(text: str, name: str, lines: int = 30) -> str:
    return f"   --- last {lines} lines of {name}:\n" + "\n".join(text.strip().splitlines()[-lines:])


def main() -> None:
    """Parse the arguments and run the full benchmarks or the smoke runs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every benchmark on a tiny backlog (seconds each)")
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    args = parser.parse_args()
    names = {b.name for b in BENCHMARKS}
    unknown = set(args.only) - names
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
    wanted = set(args.only or names)
    if args.smoke:
        wanted |= {b.needs for b in BENCHMARKS if b.name in wanted and b.needs is not None}
    chosen = [b for b in BENCHMARKS if b.name in wanted]
    if args.smoke:
        raise SystemExit(1 if run_smoke(chosen) else 0)
    run_full(chosen)


if __name__ == "__main__":
    main()
