"""``orbitwatch simulate``: produce a simulated fleet's frames to Kafka and write the ground truth."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.progress import Progress

from ingest.admin import create_topic
from ingest.errors import SourceError
from orbitwatch.cli_common import CONFIG_OPTION, settings_or_exit
from simulator.config import FaultSpec, SimulationConfig
from simulator.messages import generate
from simulator.produce import produce

_FAULT = re.compile(
    r"^(?P<kind>[a-z_]+):(?P<sat>\d+):(?P<rack>\d+)(?::(?P<node>\d+):(?P<gpu>\d+))?@(?P<start>[\d.]+)\+(?P<dur>[\d.]+)$"
)


def parse_fault(text: str) -> FaultSpec:
    """``kind:satellite:rack[:node:gpu]@start_s+duration_s`` (0-based indexes) as a FaultSpec."""
    match = _FAULT.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not kind:sat:rack[:node:gpu]@start+duration", param_hint="--fault")
    g = match.groupdict()
    try:
        return FaultSpec(
            kind=g["kind"],
            satellite=int(g["sat"]),
            rack=int(g["rack"]),
            node=int(g["node"] or 0),
            gpu=int(g["gpu"] or 0),
            start_s=float(g["start"]),
            duration_s=float(g["dur"]),
        )
    except ValidationError as exc:
        raise click.BadParameter(f"{text!r}: {exc.errors()[0]['msg']}", param_hint="--fault") from exc


def simulation_config(**fields: Any) -> SimulationConfig:
    """A SimulationConfig from CLI values; errors name the option."""
    try:
        return SimulationConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise click.BadParameter(first["msg"], param_hint="--" + str(first["loc"][0]).replace("_", "-")) from exc


@click.command()
@CONFIG_OPTION
@click.option("--satellites", type=int, default=2, show_default=True)
@click.option("--racks-per-satellite", type=int, default=2, show_default=True)
@click.option("--duration", "duration_s", type=float, default=600, show_default=True, help="Simulated seconds.")
@click.option("--start", default=None, help="Simulated start (ISO 8601, or 'now'); default 2026-11-01T00:00Z.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--contact", type=click.Choice(["orbital", "continuous"]), default="orbital", show_default=True)
@click.option("--v2-fraction", type=float, default=None, help="Share of racks on schema v2 [0.5].")
@click.option("--duplicate-rate", type=float, default=None, help="Share of frames received twice [0.02].")
@click.option("--loss-rate", type=float, default=None, help="Share of frames lost [0.001].")
@click.option("--reboot-rate", "reboot_rate_per_hour", type=float, default=None, help="Reboots per rack per hour.")
@click.option("--malformed-rate", type=float, default=None, help="Extra malformed messages per frame [0].")
@click.option("--invalid-rate", "invalid_value_rate", type=float, default=None, help="Frames with impossible values.")
@click.option("--fault", "faults", multiple=True, help="kind:sat:rack[:node:gpu]@start_s+duration_s, repeatable.")
@click.option("--partitions", type=int, default=4, show_default=True, help="Partitions if the topic is created.")
@click.option("--speed", type=float, default=None, help="Pace sending at this many times real time.")
@click.option("--truth", type=click.Path(path_type=Path, dir_okay=False), default=Path("data/truth.json"))
def simulate(
    config_path: Path | None,
    start: str | None,
    faults: tuple[str, ...],
    partitions: int,
    speed: float | None,
    truth: Path,
    **fields: Any,
) -> None:
    """Produce a simulated fleet's telemetry to Kafka and write the ground truth as JSON.

    Faults: gpu_overheat, ecc_dbe, seu_storm, radiator_failure, e.g.
    --fault gpu_overheat:0:1:3:5@120+300 (satellite 0, rack 1, node 3, GPU 5, from 120 s for 300 s).
    """
    settings = settings_or_exit(config_path)
    if start is not None:
        fields["start"] = datetime.now(UTC) if start == "now" else datetime.fromisoformat(start)
    config = simulation_config(faults=[parse_fault(f) for f in faults], **fields)
    try:
        create_topic(settings.kafka.bootstrap_servers, settings.kafka.topic, partitions)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from exc
    messages, ground_truth = generate(config, settings.registry.contract_dir)
    with Progress(transient=True) as bar:
        task = bar.add_task("producing", total=None)
        sent = produce(
            messages,
            settings.kafka.bootstrap_servers,
            settings.kafka.topic,
            progress=lambda n: bar.update(task, completed=n),
            speed=speed,
        )
    truth.parent.mkdir(parents=True, exist_ok=True)
    ground_truth.write_json(truth)
    click.echo(
        f"sent {sent} messages: {ground_truth.distinct_frames_sent} distinct frames, "
        f"{ground_truth.duplicates_sent} duplicates, {ground_truth.malformed_sent} malformed, "
        f"{ground_truth.invalid_frames_sent} with impossible values, {ground_truth.frames_lost} lost; "
        f"truth in {truth}"
    )
