"""Operating the daemon: the dead-letter limit, the metrics endpoint, the liveness check."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import duckdb
import httpx
import pytest

from orbitwatch.broker import free_port
from simulator.config import SimulationConfig, satellite_id
from simulator.messages import SimMessage
from simulator.produce import produce
from tests.helpers.metrics import metric_total
from tests.integration.daemons import DaemonFactory
from tests.integration.fleet import send_fleet

pytestmark = pytest.mark.integration


def test_a_bad_deploy_stops_the_daemon_instead_of_dead_lettering_everything(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory
) -> None:
    junk = [
        SimMessage(key=b"sat-0001/rack-1", value=b'{"json": "from a misconfigured producer"}', timestamp_ms=i)
        for i in range(1, 2001)
    ]
    produce(junk, bootstrap, topic)
    daemon = daemon_factory(daemon__dlq_window_messages="200", daemon__dlq_max_ratio="0.5")
    daemon.start()
    assert daemon.wait(60) == 1
    log = daemon.log_text()
    assert "were dead-lettered" in log or "consecutive messages could not be decoded" in log
    assert "fix the cause" in log
    assert "Traceback" not in log
    assert daemon.messages_consumed() == 0, "the offending batch must not be stored"


def test_metrics_endpoint_and_liveness_follow_the_daemon(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory
) -> None:
    port = free_port()
    daemon = daemon_factory(daemon__metrics_port=str(port))
    daemon.start()
    truth = send_fleet(bootstrap, topic, SimulationConfig(satellites=2, racks_per_satellite=2, duration_s=300, seed=4))
    sent = truth.messages_sent
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if metric_total(text, "orbitwatch_messages_total", default=0) >= sent:
            break
        time.sleep(0.2)
    assert metric_total(text, "orbitwatch_messages_total", topic=topic) == sent
    assert metric_total(text, "orbitwatch_messages_total", outcome="stored") == truth.distinct_frames_sent
    assert metric_total(text, "orbitwatch_messages_total", outcome="duplicate") == truth.duplicates_sent
    assert metric_total(text, "orbitwatch_messages_total", outcome="dead_letter") == 0
    assert metric_total(text, "orbitwatch_gpu_samples_stored_total") == 64 * truth.distinct_frames_sent
    assert metric_total(text, "orbitwatch_batch_seconds_count") > 0
    satellites = {satellite_id(s) for s in range(2)}
    for satellite in satellites:  # event time: the simulated fleet ran in November, so its frames are old
        assert metric_total(text, "orbitwatch_satellite_newest_frame_age_seconds", satellite=satellite) > 86400
    assert metric_total(text, "orbitwatch_notifications_pending") == 0  # no alert rules: nothing to deliver

    health = [sys.executable, "-m", "orbitwatch.cli", "health", "--max-age", "5"]
    alive = subprocess.run(health, env=daemon.env, capture_output=True, text=True, check=False)
    assert alive.returncode == 0, alive.stderr
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    with duckdb.connect(str(daemon.db), read_only=True) as con:  # per partition, what the shard accounted
        accounted = con.execute(
            "SELECT kafka_partition, frames_stored, duplicates_dropped, dead_letters FROM kafka_offsets"
        ).fetchall()
    assert accounted
    for partition, *counts in accounted:
        exposed = [
            metric_total(text, "orbitwatch_messages_total", topic=topic, partition=str(partition), outcome=outcome)
            for outcome in ("stored", "duplicate", "dead_letter")
        ]
        assert exposed == counts, partition
    time.sleep(1.5)
    stale = subprocess.run([*health[:-1], "1"], env=daemon.env, capture_output=True, text=True, check=False)
    assert stale.returncode == 1
    assert "not alive" in stale.stderr
