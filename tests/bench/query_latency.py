"""Latency of each saved query through the daemon's query service over 30 days of history for 1,000 racks:
without ingestion, with the fleet ingested live, and with a backlog ingested, side by side in every run.

The history is ``tests.bench.history_30d``'s dataset in ``--dataset`` (built with its defaults if missing;
what it holds is printed). The daemon writes, so the bench works on a copy of it in ``--work``, made once.

Each run has three phases, each with a fresh daemon process (``orbitwatch run``: the query service on a free
port, retention off, every other setting at its default, notably DuckDB on 1 thread while ingesting and
all cores once idle, ``storage.memory_limit`` 512MB, ``query.max_concurrent`` 2 at ``query.nice`` 10) on the
working copy. One client in this process (``QueryClient``) runs rounds of the five saved queries with their default
parameters (``rack-health-changes``: another rack each round), one after the other, in an order rotated
every round. Latency = wall-clock time of ``QueryClient.saved``: HTTP, execution in the daemon, Arrow
transfer, decoding to polars. The first round of each phase warms up and is not counted.

- **idle**: the daemon has nothing to ingest (an empty topic); ``--rounds`` rounds.
- **live**: the 1,000 racks continue live after the history (rebooted: boot epoch 1; one frame per rack per
  second, 64 k GPU samples/s), sent in real time (pre-generated; by a child process) for
  ``--live-seconds``; rounds run as long as frames are being sent.
- **backlog**: the next ``--backlog-seconds`` of the same racks' frames are produced first; the daemon
  ingests them as fast as it can while rounds run, until the backlog is consumed. Only queries that ended
  while the backlog was still being ingested are counted.

The phases' frames are consecutive segments of one simulation, so the working copy grows by each run's live
and backlog segments, and the last 6 or 24 hours the queries look at (counted back from the newest data)
include them. The ingestion rate during a phase is the daemon's ``orbitwatch_gpu_samples_stored_total``
over the counted rounds. Per run and phase: p50 and p95 of each query; printed: the medians over runs.

Measured here (2 cores, product at bfb726d, defaults; medians of 3 runs, ms p50 / p95; idle, live, backlog):
hottest-racks 17/20, 30/142, 27/139; rising-ecc 232/245, 481/788, 396/644; tenant-usage 51/58, 89/274,
184/1,354; telemetry-gaps 8/9, 13/74, 17/960; rack-health-changes 14/15, 28/131, 22/150; 0 errors; the
daemon meanwhile ingested 60.7 k GPU samples/s live (of 64 k sent) and 121 k/s from the backlog. During a
backlog the p95 of the cheap queries is the pacing (``query.backlog_share``) after an expensive one. The
bench takes about 20 minutes and needs the dataset's size again free on the disk.

    .venv/bin/python -m tests.bench.query_latency [--dataset /tmp/ow-bench/h30] [--work /tmp/ow-bench/work]
        [--runs 3] [--rounds 20] [--live-seconds 120] [--backlog-seconds 300] [--set SECTION__KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ingest.admin import create_topic
from orbitwatch.broker import free_port
from orbitwatch.discovery import discovery_path
from orbitwatch.errors import QueryServiceError
from orbitwatch.query_client import Params, QueryClient
from simulator.config import rack_id
from simulator.messages import SimMessage, generate
from simulator.produce import produce
from storage.saved_queries import SAVED_QUERIES
from tests.bench.common import PARTITIONS, broker, median
from tests.bench.history_30d import RACKS_PER_SATELLITE, Dataset, ensure, stream_config

QUERIES = tuple(SAVED_QUERIES)
PHASES = ("idle", "live", "backlog")
COMPONENTS = ("queue", "pace", "guard", "begin", "execute", "execute_cpu", "convert", "commit", "encode", "http")
"""Where a query's time goes: the daemon's phases (its ``Server-Timing``), and ``http``: the rest of the
client's wall-clock time (HTTP, Arrow transfer, decoding to polars). ``execute_cpu`` is part of ``execute``."""
DEFAULT_DATASET = Path("/tmp/ow-bench/h30")
DEFAULT_WORK = Path("/tmp/ow-bench/work")


# ---------------------------------------------------------------------------------------------- shared pieces


def saved_params(name: str, round_no: int, racks: int) -> Params:
    """The saved query's parameters in a round: its defaults, and for rack-health-changes a different rack."""
    if SAVED_QUERIES[name].parameters.get("rack") is None:
        return {}
    k = round_no * 37 + 11
    return {"rack": rack_id((k // RACKS_PER_SATELLITE) % (racks // RACKS_PER_SATELLITE), k % RACKS_PER_SATELLITE)}


def fresh_history_path(work: Path) -> Path:
    """``work``/history.duckdb with no file or WAL left there by an earlier run (``work`` made if missing)."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "history.duckdb"
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    return path


def working_copy(dataset: Dataset, work: Path) -> Path:
    """A fresh, fsynced copy of the dataset's file in ``work`` (refused when the disk would keep under 10 GB)."""
    copy = fresh_history_path(work)
    free = shutil.disk_usage(work).free
    if free - dataset.bytes < 10 * 2**30:
        raise SystemExit(f"{work}: {free / 2**30:.0f} GiB free, the copy needs {dataset.gib:.0f} GiB + 10 GiB spare")
    shutil.copyfile(dataset.path, copy)
    with copy.open("rb+") as written:  # flushed now, not by the kernel while something is measured
        os.fsync(written.fileno())
    return copy


class Stream:
    """The racks continuing after the history (one simulation), handed out in consecutive segments."""

    def __init__(self, racks: int, seconds: float) -> None:
        self.config = stream_config(racks, seconds)
        self._messages: Iterator[SimMessage] = generate(self.config)[0]
        self._next: SimMessage | None = next(self._messages, None)
        self._start_ms = int(self.config.start.timestamp() * 1000)
        self.taken_s = 0.0

    def take(self, seconds: float) -> list[SimMessage]:
        """The next ``seconds`` of messages (by receive time)."""
        self.taken_s += seconds
        until = self._start_ms + round(self.taken_s * 1000)
        segment = []
        while self._next is not None and self._next.timestamp_ms < until:
            segment.append(self._next)
            self._next = next(self._messages, None)
        return segment


class BenchDaemon:
    """``orbitwatch run`` on ``db`` reading ``topic`` (all partitions, assigned), with its query service."""

    def __init__(self, servers: str, topic: str, db: Path, log: Path, settings: dict[str, str] | None = None) -> None:
        self.db = db
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS": servers,
            "ORBITWATCH_KAFKA__TOPIC": topic,
            # A group of its own: offsets committed to Kafka by an earlier daemon must not skip anything.
            "ORBITWATCH_KAFKA__GROUP_ID": f"{topic}-{uuid.uuid4().hex[:8]}",
            "ORBITWATCH_KAFKA__STATIC_PARTITIONS": json.dumps(list(range(PARTITIONS))),
            "ORBITWATCH_STORAGE__PATH": str(db),
            "ORBITWATCH_DAEMON__LIVENESS_FILE": str(db.with_name("alive")),
            "ORBITWATCH_DAEMON__METRICS_PORT": str(self.metrics_port),
            "ORBITWATCH_DAEMON__POLL_TIMEOUT_MS": "100",
            "ORBITWATCH_QUERY__PORT": "0",
            "ORBITWATCH_RETENTION__ENABLED": "false",
            **{f"ORBITWATCH_{k.upper()}": v for k, v in (settings or {}).items()},
        }
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orbitwatch.cli", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.log = log

    def client(self, timeout_s: float = 300.0) -> QueryClient:
        """A client of the daemon's query service, once it answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.process.returncode}): {self.log_tail()}")
            client = QueryClient.discover(self.db)
            if client is not None and client.health():
                return client
            time.sleep(0.2)
        raise RuntimeError(f"no query service in {discovery_path(self.db)}: {self.log_tail()}")

    def counter(self, name: str) -> float:
        """A counter of the daemon's Prometheus endpoint (``orbitwatch_<name>_total``, summed over its labels)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        family = families.get(f"orbitwatch_{name}")
        if family is None:
            raise RuntimeError(f"no counter {name} in the daemon's metrics")
        return sum(s.value for s in family.samples if s.name == f"orbitwatch_{name}_total")

    def wait_consumed(self, messages: int, timeout_s: float = 600.0) -> None:
        """Wait until the daemon committed ``messages`` messages."""
        deadline = time.monotonic() + timeout_s
        while self.counter("messages") < messages:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the daemon did not consume {messages} messages: {self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, and wait for a clean exit."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=300)
        if code != 0:
            raise RuntimeError(f"the daemon exited with {code}: {self.log_tail()}")

    def log_tail(self) -> str:
        """The end of the daemon's log."""
        return self.log.read_text()[-3000:] if self.log.exists() else ""


def code_version() -> str:
    """The newest commit of the product the daemons run, and the product files changed but not committed (this
    tree is shared: a daemon started later imports whatever the files hold then), so a result can be traced."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(  # the newest commit that changed the product (not e.g. these benches)
            ["git", "-C", str(repo), "log", "-1", "--format=%h", "--", *PRODUCT_DIRS],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", *PRODUCT_DIRS],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    changed = sorted(line[3:] for line in status if line.strip())
    return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


PRODUCT_DIRS = ("orbitwatch", "storage", "ingest", "processing", "alerting", "simulator")


def exit_on_sigterm() -> None:
    """A SIGTERM from outside ends the bench through its ``finally`` clauses (daemon stopped, copies deleted),
    saying so, instead of silently."""

    def handle(signum: int, _frame: object) -> None:
        print(f"bench: {signal.Signals(signum).name} received from outside, stopping", file=sys.stderr, flush=True)
        raise SystemExit(1)

    signal.signal(signal.SIGTERM, handle)


def daemon_settings(given: list[str]) -> dict[str, str]:
    """``SECTION__KEY=VALUE`` arguments as settings for ``BenchDaemon``."""
    settings = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or "__" not in key:
            raise SystemExit(f"--set {item!r}: expected SECTION__KEY=VALUE, e.g. QUERY__MAX_CONCURRENT=1")
        settings[key] = value
    return settings


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set SECTION__KEY=VALUE``, repeatable: a daemon setting (as its ``ORBITWATCH_`` variable)."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION__KEY=VALUE",
        help="a daemon setting, e.g. QUERY__MAX_CONCURRENT=1 or STORAGE__MEMORY_LIMIT=2GB (repeatable)",
    )


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, interpolated between order statistics."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


# ---------------------------------------------------------------------------------------------- one phase


@dataclass(slots=True)
class Phase:
    """One phase of one run: latencies (ms) per query, rows returned, errors, the ingestion rate meanwhile."""

    name: str
    ms: dict[str, list[float]] = field(default_factory=lambda: {q: [] for q in QUERIES})
    parts: dict[str, list[dict[str, float]]] = field(default_factory=lambda: {q: [] for q in QUERIES})
    """Per query, each counted request's components (ms, ``COMPONENTS``), in the order of ``ms``."""
    rows: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    rounds: int = 0
    samples_per_s: float = 0.0

    def p(self, query: str, q: float) -> float:
        """The ``q`` quantile of ``query``'s latencies (NaN without any)."""
        values = self.ms[query]
        return percentile(values, q) if values else float("nan")

    def breakdown(self, query: str) -> dict[str, tuple[float, float]]:
        """Per component (ms): its median over ``query``'s requests, and its mean over the slowest twentieth
        (the requests at or over the p95), which tells what the p95 is made of."""
        parts, ms = self.parts[query], self.ms[query]
        if not parts:
            return {c: (float("nan"), float("nan")) for c in COMPONENTS}
        p95 = self.p(query, 0.95)
        tail = [part for part, total in zip(parts, ms, strict=True) if total >= p95] or parts
        return {
            c: (statistics.median(p.get(c, 0.0) for p in parts), statistics.fmean(p.get(c, 0.0) for p in tail))
            for c in COMPONENTS
        }


def components(server_s: dict[str, float], elapsed_ms: float) -> dict[str, float]:
    """One request's ``COMPONENTS`` in ms: the daemon's phases, and ``http`` the rest of ``elapsed_ms``."""
    parts = {name: seconds * 1000 for name, seconds in server_s.items()}
    parts["http"] = elapsed_ms - sum(ms for name, ms in parts.items() if name != "execute_cpu")
    return parts


def run_rounds(
    client: QueryClient,
    phase: Phase,
    racks: int,
    go_on: Callable[[], bool],
    ingested: Callable[[], float],
    rounds: int | None = None,
) -> None:
    """A warm-up round, then rounds while ``go_on()`` (and up to ``rounds`` if given), each query timed.

    A latency is kept only if ``go_on()`` still holds when its query returns (e.g. the backlog is not yet
    consumed). ``ingested()`` (GPU samples stored so far) is read after the warm-up and after each kept
    query: the ingestion rate over the kept queries.
    """
    first: tuple[float, float] | None = None
    last: tuple[float, float] | None = None
    round_no = 0
    while (rounds is None or phase.rounds < rounds) and go_on():
        if round_no == 1:
            first = (time.perf_counter(), ingested())
        order = QUERIES[round_no % len(QUERIES) :] + QUERIES[: round_no % len(QUERIES)]
        for name in order:
            began = time.perf_counter()
            try:
                timed = client.saved_timed(name, saved_params(name, round_no, racks))
            except QueryServiceError as exc:
                phase.errors.append(f"{name}: {exc.kind}: {exc}")
                continue
            elapsed_ms = (time.perf_counter() - began) * 1000
            if not go_on():
                break
            if round_no > 0:
                phase.ms[name].append(elapsed_ms)
                phase.parts[name].append(components(timed.phases, elapsed_ms))
                phase.rows[name] = timed.frame.height
                last = (time.perf_counter(), ingested())
        else:
            phase.rounds += round_no > 0
        round_no += 1
    if first is not None and last is not None and last[0] > first[0]:
        phase.samples_per_s = (last[1] - first[1]) / (last[0] - first[0])


def measure_phase(
    name: str,
    servers: str,
    topic: str,
    db: Path,
    racks: int,
    feed: Callable[[], Feed],
    args: argparse.Namespace,
) -> Phase:
    """Start a daemon on ``topic``, start ``feed``, run rounds while it lasts (idle: ``--rounds``), stop."""
    phase = Phase(name)
    daemon = BenchDaemon(servers, topic, db, args.work / "daemon.log", daemon_settings(args.set))
    try:
        with daemon.client() as client:
            active = feed()
            run_rounds(
                client,
                phase,
                racks,
                lambda: active.running(daemon),
                lambda: daemon.counter("gpu_samples_stored"),
                args.rounds if name == "idle" else None,
            )
            active.finish(daemon)
    finally:
        daemon.stop()
    return phase


class Feed:
    """What the daemon ingests during a phase: nothing (idle), a live stream, or a backlog."""

    def running(self, daemon: BenchDaemon) -> bool:
        """True while the phase's ingestion goes on."""
        return True

    def finish(self, daemon: BenchDaemon) -> None:
        """Let the daemon consume everything of the phase before it is stopped."""


class LiveFeed(Feed):
    """Messages sent in real time, as their receive times come, by a forked process (so that the producer does
    not take this process's GIL from the client whose latencies are measured)."""

    def __init__(self, messages: list[SimMessage], servers: str, topic: str) -> None:
        self.count = len(messages)
        fork = multiprocessing.get_context("fork")  # the child inherits the messages, nothing is pickled
        self.process = fork.Process(target=produce, args=(messages, servers, topic), kwargs={"speed": 1.0})
        self.process.start()

    def running(self, daemon: BenchDaemon) -> bool:
        """While frames are being sent."""
        return self.process.is_alive()

    def finish(self, daemon: BenchDaemon) -> None:
        """Every frame sent and consumed."""
        self.process.join()
        if self.process.exitcode != 0:
            raise RuntimeError(f"the live producer failed ({self.process.exitcode})")
        daemon.wait_consumed(self.count)


class BacklogFeed(Feed):
    """A topic produced before the daemon started."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._done = False

    def running(self, daemon: BenchDaemon) -> bool:
        """Until the daemon committed the whole backlog."""
        self._done = self._done or daemon.counter("messages") >= self.count
        return not self._done

    def finish(self, daemon: BenchDaemon) -> None:
        """The whole backlog consumed."""
        daemon.wait_consumed(self.count)


# ---------------------------------------------------------------------------------------------- main


def one_run(run: int, servers: str, db: Path, work: Path, stream: Stream, args: argparse.Namespace) -> list[Phase]:
    """The three phases of one run, in order: idle, live, backlog."""
    racks = stream.config.rack_count
    phases = []
    for name in PHASES:
        topic = f"latency-{run}-{name}"
        create_topic(servers, topic, PARTITIONS)
        feed: Callable[[], Feed] = Feed
        if name == "live":
            feed = partial(LiveFeed, stream.take(args.live_seconds), servers, topic)
        elif name == "backlog":
            backlog = stream.take(args.backlog_seconds)
            began = time.perf_counter()
            sent = produce(backlog, servers, topic)
            print(f"  backlog of {sent:,} messages produced in {time.perf_counter() - began:.0f} s", flush=True)
            del backlog
            feed = partial(BacklogFeed, sent)
        phase = measure_phase(name, servers, topic, db, racks, feed, args)
        phases.append(phase)
        cells = ", ".join(f"{q} {phase.p(q, 0.5):.0f}/{phase.p(q, 0.95):.0f}" for q in QUERIES)
        rate = f", ingesting {phase.samples_per_s:,.0f} GPU samples/s" if name != "idle" else ""
        print(
            f"run {run} {name}: {phase.rounds} rounds{rate}, {len(phase.errors)} errors; p50/p95 ms: {cells}",
            flush=True,
        )
        for error in phase.errors[:5]:
            print(f"  error: {error}", flush=True)
    return phases


def report(runs: list[list[Phase]], dataset: Dataset) -> dict[str, object]:
    """Print the table of medians over runs; return the JSON summary."""
    table: dict[str, dict[str, list[float]]] = {}
    for name in QUERIES:
        table[name] = {}
        for i, phase in enumerate(PHASES):
            table[name][phase] = [
                round(median([r[i].p(name, 0.5) for r in runs]), 1),
                round(median([r[i].p(name, 0.95) for r in runs]), 1),
            ]
    rates = {p: round(median([r[i].samples_per_s for r in runs])) for i, p in enumerate(PHASES) if p != "idle"}
    rows = {q: runs[-1][0].rows.get(q, 0) for q in QUERIES}
    print(f"\nmedians of {len(runs)} runs, ms (p50 / p95), {dataset.describe()}")
    header = f"{'saved query':<22}" + "".join(f"{p:>20}" for p in PHASES) + "   rows (idle, last run)"
    print(header)
    for name in QUERIES:
        cells = "".join(f"{f'{a:,.0f} / {b:,.0f}':>20}" for a, b in table[name].values())
        print(f"{name:<22}{cells}   {rows[name]}")
    print(f"ingestion meanwhile (GPU samples/s, median): live {rates['live']:,}, backlog {rates['backlog']:,}")
    counted = {p: [r[i].rounds for r in runs] for i, p in enumerate(PHASES)}
    errors = sum(len(phase.errors) for r in runs for phase in r)
    print(f"rounds counted per run: {counted}; errors: {errors}")
    breakdown = report_breakdown(runs)
    return {
        "dataset": dataset.describe(),
        "p50_p95_ms": table,
        "ingest_samples_per_s": rates,
        "breakdown_ms": breakdown,
        "rounds": counted,
        "errors": errors,
        "rows": rows,
    }


def report_breakdown(runs: list[list[Phase]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Print, per phase, where each query's time went (ms: median / mean of the slowest twentieth, each the
    median over runs); return it by phase, query and component."""
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for i, phase in enumerate(PHASES):
        print(f"\n{phase}: where the time went, ms (median request / mean of the slowest 5%), medians of runs")
        print(f"{'saved query':<22}" + "".join(f"{c:>17}" for c in COMPONENTS))
        table[phase] = {}
        for name in QUERIES:
            each = [r[i].breakdown(name) for r in runs]
            table[phase][name] = {
                c: [round(median([b[c][0] for b in each]), 1), round(median([b[c][1] for b in each]), 1)]
                for c in COMPONENTS
            }
            cells = "".join(f"{f'{a:,.1f} / {b:,.0f}':>17}" for a, b in table[phase][name].values())
            print(f"{name:<22}{cells}")
    return table


def main() -> None:
    """Build or find the dataset, copy it, then run the phases ``--runs`` times."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset", type=Path, default=DEFAULT_DATASET, help="history_30d directory (built if missing)"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where the working copy goes (deleted after)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds of the idle phase")
    parser.add_argument("--live-seconds", type=float, default=120.0, help="length of the live phase")
    parser.add_argument("--backlog-seconds", type=float, default=300.0, help="simulated seconds of the backlog")
    add_set_option(parser)
    args = parser.parse_args()
    daemon_settings(args.set)
    exit_on_sigterm()
    began = time.perf_counter()
    dataset = Dataset.load(args.dataset) or ensure(args.dataset)  # whatever is there, else the default build
    print(f"dataset: {dataset.describe()}", flush=True)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; daemon settings: {args.set}", flush=True)
    version = code_version()
    print(f"code: {version}", flush=True)
    db = working_copy(dataset, args.work)
    try:
        stream = Stream(dataset.racks, args.runs * (args.live_seconds + args.backlog_seconds) + 60)
        with broker() as servers:
            runs = [one_run(run + 1, servers, db, args.work, stream, args) for run in range(args.runs)]
        summary = report(runs, dataset)
        summary["daemon_settings"] = args.set
        summary["code"] = (
            version if code_version() == version else f"changed during the bench: {version} -> {code_version()}"
        )
        summary["seconds"] = round(time.perf_counter() - began)
        summary["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(summary))
    finally:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
