"""The operators' web view (``orbitwatch web``) in a real headless Chromium, over 30 days of history for 1,000
racks, while the daemon it reads ingests the 1,000 racks live: fleet page load, rack page with a 7-day plot,
and the delay from a batch commit to the fleet page showing it.

The history is ``tests.bench.history_30d``'s dataset in ``--dataset`` (built with its defaults if missing;
what it holds is printed). The daemon writes, so the bench works on a copy of it in ``--work``, made once.

Each run: a fresh daemon process on the working copy (``tests.bench.query_latency.BenchDaemon``: the query
service on a free port, retention off, every other setting at its default), ``orbitwatch web --url`` on the
daemon's query service (a process of its own, web settings at their defaults: it polls the daemon's
``/v1/status`` every 0.25 s), and the live load of ``query_latency``'s live phase: the 1,000 racks continue
after the history (boot epoch 1, one frame per rack per second, 64 k GPU samples/s), sent in real time for
``--live-seconds`` by a forked child (``LiveFeed``). Then Chromium (``tests.helpers.browser``: Debian's, via
Playwright) opens two browser contexts (two windows; Playwright keeps background pages unthrottled):

- **watcher**: one fleet page, opened once the frames flow and left open until the last frame is sent. Its
  ``live.js`` re-fetches the fleet fragment on every ``update`` event and pushes ``{commits, reason,
  shownAt}`` onto ``window.orbitwatchUpdates``. Afterwards, for every entry with reason ``commit``: delay =
  ``shownAt`` (browser clock, ms) minus the newest of the shards' ``last_commit`` times in ``commits`` (the
  daemon's wall clock at its commit; same machine, same clock). It covers the web process's poll, the event,
  the fragment's query through the daemon's query service (paced behind ingestion), its rendering and
  transfer, and the swap in the page. An event that arrives while the page is still fetching the previous
  one is fetched for (and recorded with its own ``commits``) once that fetch ends, so its wait counts too.
- **pages**, at the same time: rounds of (1) ``/fleet``, timed from ``page.goto`` to its ``load`` event
  (wall clock in this process), then (2) ``/rack?id=RACK&range=7d``, timed from ``page.goto`` until
  ``body[data-plotted]`` is set (``rack.js``, once its plots are drawn from ``/api/rack``); another rack every
  round. Before each load the tab goes to ``about:blank`` (untimed), so apart from the load measured only the
  watcher is live; assets the pages share (``plotly.min.js``, the CSS and scripts) stay in the tab's cache
  as they would for an operator. A warm-up round first (not counted), then up to ``--rounds`` rounds while the
  frames are being sent; a round that ends after the last frame was sent is not counted.

Errors counted: a page load that failed or timed out, a JavaScript exception, a console error, an HTTP
response >= 400, and ERROR/Traceback lines in the web process's log (its WARNING lines are printed too). The
ingestion rate is the daemon's ``orbitwatch_gpu_samples_stored_total`` over the watcher's window (sent: 64
per rack and second); the drain is how long the daemon took after the last frame was sent to commit all.
Per run: p50/p95 of both pages, count/p50/p99 of the delay; printed: the medians over runs.

Measured here (2 cores, product at 3a58b88, defaults; medians of 3 runs of 20 rounds, 117 s live each): fleet
page (1,000 racks, 336 KB) p50 253 ms, p95 508 ms; rack page with a 7-day plot p50 1,288 ms, p95 2,772 ms;
commit to fleet page showing it p50 333 ms, p99 899 ms (42-57 updates a run); 0 errors; the daemon meanwhile
ingested 61.5 k GPU samples/s of the 64 k sent and drained 3.4-4.7 s after the last frame. The browser, the
web process, the producer and the daemon share the 2 cores; most of the rack page is Plotly drawing in the
browser (about 450 ms of its 650 ms on an idle machine; ``/api/rack`` takes about 80 ms).

    .venv/bin/python -m tests.bench.web_view [--dataset /tmp/ow-bench/h30] [--work /tmp/ow-bench/work-web]
        [--runs 3] [--rounds 20] [--live-seconds 120] [--set SECTION__KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Browser, ConsoleMessage, Page, Response, ViewportSize
from playwright.sync_api import Error as PlaywrightError

from ingest.admin import create_topic
from simulator.config import GPUS_PER_RACK, rack_id
from tests.bench.common import PARTITIONS, broker, median
from tests.bench.history_30d import RACKS_PER_SATELLITE, Dataset, ensure
from tests.bench.query_latency import (
    DEFAULT_DATASET,
    BenchDaemon,
    LiveFeed,
    Stream,
    add_set_option,
    code_version,
    daemon_settings,
    exit_on_sigterm,
    percentile,
    working_copy,
)
from tests.helpers.browser import chromium
from tests.helpers.web import WebProcess

DEFAULT_WORK = Path("/tmp/ow-bench/work-web")
RANGE = "7d"
PAGE_TIMEOUT_MS = 120_000
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}


# ---------------------------------------------------------------------------------------------- one run


@dataclass(slots=True)
class Run:
    """One run's figures: page times (ms), commit-to-shown delays (ms), errors, the ingestion meanwhile."""

    fleet_ms: list[float] = field(default_factory=list)
    rack_ms: list[float] = field(default_factory=list)
    delays_ms: list[float] = field(default_factory=list)
    """Per commit entry: shownAt minus the newest commit it shows."""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rounds: int = 0
    window_s: float = 0.0
    samples_per_s: float = 0.0
    drain_s: float = 0.0
    fleet_bytes: int = 0

    def p(self, values: list[float], q: float) -> float:
        """The ``q`` quantile of ``values`` (NaN without any)."""
        return percentile(values, q) if values else float("nan")


def rack_of(round_no: int, racks: int) -> str:
    """The rack whose page a round opens: another one every round, spread over the satellites."""
    k = round_no * 37 + 11
    return rack_id((k // RACKS_PER_SATELLITE) % (racks // RACKS_PER_SATELLITE), k % RACKS_PER_SATELLITE)


def watch_errors(page: Page, name: str, errors: list[str]) -> None:
    """Record ``page``'s JavaScript exceptions, console errors and HTTP errors in ``errors``."""

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{name}: console: {message.text[:300]}")

    def response(answer: Response) -> None:
        if answer.status >= 400:
            errors.append(f"{name}: HTTP {answer.status} for {answer.url}")

    page.on("pageerror", lambda exc: errors.append(f"{name}: page error: {str(exc)[:300]}"))
    page.on("console", console)
    page.on("response", response)


def load_fleet(page: Page, web: str) -> tuple[float, int]:
    """Time the fleet page from navigation to its load event; (ms, bytes of its HTML)."""
    page.goto("about:blank")
    began = time.perf_counter()
    answer = page.goto(f"{web}/fleet", wait_until="load")
    elapsed_ms = (time.perf_counter() - began) * 1000
    if answer is None or not answer.ok:
        raise PlaywrightError(f"/fleet answered {answer.status if answer else 'nothing'}")
    return elapsed_ms, len(answer.body())


def load_rack(page: Page, web: str, rack: str) -> float:
    """Time the rack page with its 7-day plots from navigation until they are drawn; ms."""
    page.goto("about:blank")
    began = time.perf_counter()
    answer = page.goto(f"{web}/rack?id={quote(rack, safe='')}&range={RANGE}", wait_until="commit")
    if answer is None or not answer.ok:
        raise PlaywrightError(f"/rack?id={rack} answered {answer.status if answer else 'nothing'}")
    page.wait_for_selector("body[data-plotted]", state="attached")
    return (time.perf_counter() - began) * 1000


def newest_commit_ms(commits: list[Any]) -> float | None:
    """The newest of the shards' ISO ``last_commit`` times, in ms since the epoch (None without any)."""
    times = [datetime.fromisoformat(c).timestamp() * 1000 for c in commits if isinstance(c, str) and c]
    return max(times) if times else None


def commit_delays(updates: list[dict[str, Any]], run: Run) -> None:
    """The delays of the watcher's commit entries (see the module's docstring) into ``run``."""
    for entry in updates:
        newest = newest_commit_ms(entry.get("commits") or []) if entry.get("reason") == "commit" else None
        if newest is not None:
            run.delays_ms.append(float(entry["shownAt"]) - newest)


def web_log_lines(log: Path, since: int) -> tuple[list[str], list[str]]:
    """The web log's error and warning lines written after byte ``since``."""
    text = log.read_bytes()[since:].decode(errors="replace") if log.exists() else ""
    lines = text.splitlines()
    errors = [line for line in lines if "ERROR" in line or "Traceback" in line or "CRITICAL" in line]
    warnings = [line for line in lines if "WARNING" in line]
    return errors, warnings


def measure(
    browser: Browser, web: str, feed: LiveFeed, daemon: BenchDaemon, racks: int, args: argparse.Namespace
) -> Run:
    """The watcher and the page rounds while ``feed`` sends (see the module's docstring)."""
    run = Run()
    watcher_context = browser.new_context(viewport=VIEWPORT)
    watcher = watcher_context.new_page()
    watcher.set_default_timeout(PAGE_TIMEOUT_MS)
    watch_errors(watcher, "watcher", run.errors)
    watcher.goto(f"{web}/fleet", wait_until="load")
    watcher.wait_for_function("document.getElementById('live').textContent.startsWith('live')")
    began, stored = time.perf_counter(), daemon.counter("gpu_samples_stored")

    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    watch_errors(page, "pages", run.errors)
    round_no = 0
    while run.rounds < args.rounds and feed.running(daemon):
        rack = rack_of(round_no, racks)
        fleet_ms = rack_ms = None
        try:
            fleet_ms, run.fleet_bytes = load_fleet(page, web)
        except PlaywrightError as exc:
            run.errors.append(f"pages: /fleet: {str(exc).splitlines()[0][:300]}")
        try:
            rack_ms = load_rack(page, web, rack)
        except PlaywrightError as exc:
            run.errors.append(f"pages: /rack?id={rack}: {str(exc).splitlines()[0][:300]}")
        if not feed.running(daemon):
            break  # the frames ended during this round: not measured under the live load
        if round_no > 0:
            run.fleet_ms += [fleet_ms] if fleet_ms is not None else []
            run.rack_ms += [rack_ms] if rack_ms is not None else []
            run.rounds += 1
        round_no += 1
    page.goto("about:blank")

    feed.process.join()  # the watcher's window ends with the last frame sent
    run.window_s = time.perf_counter() - began
    run.samples_per_s = (daemon.counter("gpu_samples_stored") - stored) / run.window_s
    updates: list[dict[str, Any]] = watcher.evaluate("window.orbitwatchUpdates")
    commit_delays(updates, run)
    watcher_context.close()
    return run


def one_run(number: int, servers: str, db: Path, stream: Stream, args: argparse.Namespace) -> Run:
    """One run: daemon, web process, live frames, the browser's measurements; everything stopped after."""
    topic = f"web-view-{number}"
    create_topic(servers, topic, PARTITIONS)
    messages = stream.take(args.live_seconds)
    racks = stream.config.rack_count
    web_log = args.work / "web.log"
    log_start = web_log.stat().st_size if web_log.exists() else 0
    daemon = BenchDaemon(servers, topic, db, args.work / "daemon.log", daemon_settings(args.set))
    web: WebProcess | None = None
    try:
        with daemon.client() as client:
            web = WebProcess(web_log, "--url", client.url)
            url = web.start()
            feed = LiveFeed(messages, servers, topic)  # forked before Playwright starts its driver and threads
            del messages
            with chromium() as browser:
                run = measure(browser, url, feed, daemon, racks, args)
            drain_began = time.perf_counter()
            feed.finish(daemon)
            run.drain_s = time.perf_counter() - drain_began
    finally:
        if web is not None:
            web.stop()
        daemon.stop()
    log_errors, run.warnings = web_log_lines(web_log, log_start)
    run.errors += [f"web log: {line[:300]}" for line in log_errors]
    sent = racks * GPUS_PER_RACK
    print(
        f"run {number}: {run.rounds} rounds; fleet page {run.p(run.fleet_ms, 0.5):,.0f}/"
        f"{run.p(run.fleet_ms, 0.95):,.0f} ms (p50/p95, {run.fleet_bytes / 1000:,.0f} KB), rack page {RANGE} "
        f"plotted {run.p(run.rack_ms, 0.5):,.0f}/{run.p(run.rack_ms, 0.95):,.0f} ms; commit to fleet page shown: "
        f"{len(run.delays_ms)} updates, {run.p(run.delays_ms, 0.5):,.0f}/{run.p(run.delays_ms, 0.99):,.0f} ms "
        f"(p50/p99); ingesting {run.samples_per_s:,.0f} GPU samples/s of {sent:,} sent over "
        f"{run.window_s:.0f} s, drained {run.drain_s:.1f} s after the last frame; {len(run.errors)} errors, "
        f"{len(run.warnings)} web log warnings",
        flush=True,
    )
    for line in run.errors[:5] + [f"web log warning: {w[:300]}" for w in run.warnings[:3]]:
        print(f"  {line}", flush=True)
    return run


# ---------------------------------------------------------------------------------------------- main


def report(runs: list[Run], dataset: Dataset, sent: int) -> dict[str, object]:
    """Print the medians over runs; return the JSON summary."""

    def over_runs(values: list[float]) -> float:
        values = [v for v in values if not math.isnan(v)]  # a run without any has NaN
        return round(median(values), 1) if values else float("nan")

    fleet = [over_runs([r.p(r.fleet_ms, q) for r in runs]) for q in (0.5, 0.95)]
    rack = [over_runs([r.p(r.rack_ms, q) for r in runs]) for q in (0.5, 0.95)]
    delay = [over_runs([r.p(r.delays_ms, q) for r in runs]) for q in (0.5, 0.99)]
    rate = round(median([r.samples_per_s for r in runs]))
    errors = sum(len(r.errors) for r in runs)
    counts = [len(r.delays_ms) for r in runs]
    print(f"\nmedians of {len(runs)} runs, {dataset.describe()}")
    print(f"fleet page, navigation to load:            p50 {fleet[0]:,.0f} ms, p95 {fleet[1]:,.0f} ms")
    print(f"rack page {RANGE}, navigation to plotted:      p50 {rack[0]:,.0f} ms, p95 {rack[1]:,.0f} ms")
    print(
        f"commit to fleet page showing it:           p50 {delay[0]:,.0f} ms, p99 {delay[1]:,.0f} ms "
        f"(updates per run: {counts})"
    )
    print(
        f"ingestion meanwhile: {rate:,} GPU samples/s (median; {sent:,} sent); rounds counted per run: "
        f"{[r.rounds for r in runs]}; errors: {errors}"
    )
    return {
        "dataset": dataset.describe(),
        "fleet_load_ms_p50_p95": fleet,
        "rack_7d_plotted_ms_p50_p95": rack,
        "commit_to_shown_ms_p50_p99": delay,
        "updates": counts,
        "fleet_page_bytes": runs[-1].fleet_bytes,
        "ingest_samples_per_s": rate,
        "sent_samples_per_s": sent,
        "drain_s": [round(r.drain_s, 1) for r in runs],
        "rounds": [r.rounds for r in runs],
        "errors": errors,
        "web_log_warnings": sum(len(r.warnings) for r in runs),
    }


def main() -> None:
    """Build or find the dataset, copy it, then measure ``--runs`` times."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset", type=Path, default=DEFAULT_DATASET, help="history_30d directory (built if missing)"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where the working copy goes (deleted after)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds of page loads per run (+1 warm-up)")
    parser.add_argument("--live-seconds", type=float, default=120.0, help="length of each run's live ingestion")
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
        stream = Stream(dataset.racks, args.runs * args.live_seconds + 60)
        with broker() as servers:
            runs = [one_run(number + 1, servers, db, stream, args) for number in range(args.runs)]
        summary = report(runs, dataset, stream.config.rack_count * GPUS_PER_RACK)
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
