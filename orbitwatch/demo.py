"""``orbitwatch demo``: embedded broker, a simulated fleet, the daemon, a fleet summary and a first query."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ingest.admin import create_topic
from orbitwatch.broker import EmbeddedBroker
from orbitwatch.cli_common import CONFIG_OPTION, settings_or_exit, setup_logging
from orbitwatch.render import render
from simulator.config import FaultSpec, SimulationConfig
from simulator.messages import generate
from simulator.produce import produce
from storage.database import open_database
from storage.query import run_query

FLEET_SUMMARY = """
SELECT split_part(rack_id, '/', 1) AS satellite, count(DISTINCT rack_id) AS racks, sum(frames) AS frames,
       round(sum(frames) / sum(expected_s), 3) AS coverage, round(max(temp_max), 1) AS max_gpu_temp_c,
       round(sum(util_mean * util_readings) / sum(util_readings), 1) AS util_pct,
       count(*) FILTER (state != 'ok') AS rack_minutes_not_ok
FROM rack_rollups_1m GROUP BY ALL ORDER BY 1"""
HEALTH_NOW = """
SELECT rack_id, state, last_known_state, reasons[1] AS first_reason FROM fleet_health_now
ORDER BY state = 'ok', rack_id"""
CRITICAL_HISTORY = """
SELECT rack_id, min(window_start) AS first_minute, max(window_start) AS last_minute, count(*) AS minutes,
       any_value(reasons[1]) AS a_reason
FROM rack_health_history WHERE state = 'critical' GROUP BY rack_id ORDER BY rack_id"""
TENANTS = """
SELECT tenant, round(sum(gpu_hours), 1) AS gpu_hours, max(racks) AS racks FROM tenant_usage_hourly
GROUP BY tenant ORDER BY gpu_hours DESC LIMIT 5"""
DEMO_FLEET = SimulationConfig(
    satellites=3,
    racks_per_satellite=4,
    duration_s=3600,
    seed=7,
    malformed_rate=0.001,
    faults=[FaultSpec(kind="gpu_overheat", satellite=1, rack=2, node=3, gpu=5, start_s=600, duration_s=900)],
)


@click.command()
@CONFIG_OPTION
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("demo-data"))
def demo(config_path: Path | None, data_dir: Path) -> None:
    """Start the embedded broker (unless Kafka is configured), simulate a fleet, ingest it, query it."""
    console = Console()
    external = os.environ.get("ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS") or config_path is not None
    shutil.rmtree(data_dir, ignore_errors=True)
    with ExitStack() as stack:
        kafka: dict[str, object] = {}
        if not external:
            broker = stack.enter_context(EmbeddedBroker(log_path=_log_path(data_dir)))
            kafka["bootstrap_servers"] = broker.bootstrap_servers
            # Tansu's group join takes about half the session timeout (DESIGN.md): 6 s, not the default 10.
            kafka.update(session_timeout_ms=6000, heartbeat_interval_ms=1500)
            console.print(f"[bold]1.[/] embedded broker (Tansu) on {broker.bootstrap_servers}")
        settings = settings_or_exit(
            config_path,
            kafka=kafka,
            storage={"path": str(data_dir / "orbitwatch.duckdb")},
            daemon={
                "metrics_port": None,
                "liveness_file": str(data_dir / "orbitwatch.alive"),
                "log_level": "WARNING",
            },
            query={"port": 0},  # any free port: the demo must not fail on a busy one
        )
        setup_logging(settings.daemon.log_level)
        create_topic(settings.kafka.bootstrap_servers, settings.kafka.topic, 4)
        sent = _simulate(
            console,
            settings.kafka.bootstrap_servers,
            settings.kafka.topic,
            settings.registry.contract_dir,
            data_dir,
        )
        _ingest(console, settings, sent)
    _summarise(console, settings.storage.path)


def _log_path(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir / "broker.log"


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def _simulate(console: Console, servers: str, topic: str, contract_dir: Path, data_dir: Path) -> int:
    fleet = DEMO_FLEET
    console.print(
        f"[bold]2.[/] simulating {fleet.satellites} satellites x {fleet.racks_per_satellite} racks x 64 GPUs "
        f"for {fleet.duration_s / 60:.0f} orbital minutes (eclipses, ground passes, playback, duplicates, "
        "malformed messages, an overheating GPU)"
    )
    messages, truth = generate(fleet, contract_dir)
    with _progress() as bar:
        task = bar.add_task("producing to Kafka", total=None)
        sent = produce(messages, servers, topic, progress=lambda n: bar.update(task, completed=n))
    truth.write_json(data_dir / "truth.json")
    console.print(
        f"   sent {sent} messages: {truth.distinct_frames_sent} frames, {truth.duplicates_sent} duplicates, "
        f"{truth.malformed_sent} malformed"
    )
    return sent


def _ingest(console: Console, settings: object, sent: int) -> None:
    from orbitwatch.daemon import Daemon
    from orbitwatch.settings import Settings

    assert isinstance(settings, Settings)
    console.print(f"[bold]3.[/] the daemon ingests into {settings.storage.path}")
    daemon = Daemon(settings)
    consumed, samples, started = 0, 0, time.monotonic()
    joined: float | None = None
    try:
        with _progress() as bar:
            task = bar.add_task("ingesting", total=sent)
            while consumed < sent and time.monotonic() - started < 120:
                result = daemon.run_batch()
                if joined is None and daemon.source.assigned_partitions():
                    joined = time.monotonic()
                if result is not None:
                    consumed += result.messages
                    samples += result.stored.samples_stored
                    bar.update(task, completed=consumed)
        last = daemon.commit_finished()
        if last is not None:
            samples += last.stored.samples_stored
        daemon.refresh_health_now(force=True)
    finally:
        daemon.close()
    ended = time.monotonic()
    joining = (joined or ended) - started
    console.print(
        f"   {consumed} messages, {samples} GPU samples in {ended - started:.1f} s, of which {joining:.1f} s "
        f"joining the consumer group ({samples / max(ended - started - joining, 1e-9):,.0f} samples/s once assigned)"
    )


def _summarise(console: Console, db: Path) -> None:
    con = open_database(db, read_only=True)
    console.print("[bold]4.[/] fleet summary (rack_rollups_1m)")
    click.echo(render(run_query(con, FLEET_SUMMARY), "table"), nl=False)
    console.print("   health as the ground knows it now (fleet_health_now)")
    click.echo(render(run_query(con, HEALTH_NOW), "table"), nl=False)
    console.print(
        "   critical minutes in event time (the simulated fault: sat-0002/rack-3, node 3, GPU 5, 00:10-00:25)"
    )
    click.echo(render(run_query(con, CRITICAL_HISTORY), "table"), nl=False)
    console.print("   GPU-hours per tenant (tenant_usage_hourly)")
    click.echo(render(run_query(con, TENANTS), "table"), nl=False)
    counts = run_query(con, "SELECT count(*), (SELECT count(*) FROM dead_letters) FROM rack_frames").rows[0]
    console.print(f"   {counts[0]} frames stored once each; {counts[1]} malformed messages in dead_letters")
    con.close()
    click.echo(
        f'Query further: .venv/bin/orbitwatch query --db {db} "SELECT * FROM gpu_rollups_1m LIMIT 5"\n'
        '   or: .venv/bin/python -c "import duckdb; '
        f"print(duckdb.connect('{db}', read_only=True).sql('FROM rack_frames LIMIT 5'))\"\n"
        f"See it in a browser: .venv/bin/orbitwatch web --db {db}   (then open http://127.0.0.1:9470/)"
    )
