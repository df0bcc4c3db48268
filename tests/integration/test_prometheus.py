"""A real Prometheus (Debian's ``prometheus``) scrapes a running daemon and evaluates deploy/'s rules.

The fleet: two satellites of two racks, one frame a minute for the last 8 hours. Every frame of
``sat-0001`` is sent; ``sat-0002``'s stop after its first hour, so in event time its newest frame is 7
hours old: past the 6 hours of ``OrbitwatchSatelliteStale``. The rules are deploy/'s, with every ``for:``
cut to 0 s so that a test need not wait 15 minutes for a rule whose condition already holds.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from orbitwatch.broker import free_port
from orbitwatch.query_client import QueryClient
from simulator.config import SimulationConfig, satellite_id
from simulator.messages import generate
from simulator.produce import produce
from tests.helpers.prometheus import Prometheus
from tests.integration.daemons import DaemonFactory, DaemonProcess

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "orbitwatch-alerts.yaml"
HISTORY = timedelta(hours=8)
STOPS_AFTER = timedelta(hours=1)
LIVE, SILENT = satellite_id(0), satellite_id(1)


def _until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _rules_without_waiting(path: Path) -> Path:
    """deploy/'s rules, unchanged but for ``for: 0s``."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    path.write_text(yaml.safe_dump(doc))
    return path


def _value(prometheus: Prometheus, promql: str) -> float | None:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None


def _ages(prometheus: Prometheus) -> dict[str, float]:
    result = prometheus.query("orbitwatch_satellite_newest_frame_age_seconds")
    return {r["metric"]["satellite"]: float(r["value"][1]) for r in result}


def _stored(daemon: DaemonProcess) -> int:
    client = QueryClient.discover(daemon.db, timeout_s=5.0)
    assert client is not None, "the daemon's query service is not up"
    with client:
        return int(client.query("SELECT count(*) FROM rack_frames")[0, 0])


def test_prometheus_scrapes_the_daemon_and_the_stale_satellite_rule_fires(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - HISTORY
    fleet = SimulationConfig(
        satellites=2,
        racks_per_satellite=2,
        duration_s=HISTORY.total_seconds(),
        frame_interval_s=60,
        contact="continuous",
        start=start,
        seed=23,
    )
    stop_ms = int((start + STOPS_AFTER).timestamp() * 1000)
    generated, _truth = generate(fleet)
    sent = [m for m in generated if not m.key.startswith(SILENT.encode()) or m.timestamp_ms < stop_ms]
    produce(sent, bootstrap, topic)

    port = free_port()
    daemon = daemon_factory(daemon__metrics_port=str(port)).start()
    prometheus = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{port}", _rules_without_waiting(tmp_path / "r.yaml"))
    prometheus.start()
    try:
        daemon.wait_for_progress(len(sent) - 1)
        # The counter, read through PromQL, adds up to every message sent; its stored part is what the daemon
        # stored (asked of the daemon itself, through its query service).
        _until(lambda: _value(prometheus, "sum(orbitwatch_messages_total)") == len(sent), 60, "a scrape of it all")
        stored = _value(prometheus, 'sum(orbitwatch_messages_total{outcome="stored"})')
        assert stored == _stored(daemon) > 0
        partitions = prometheus.query('sum by (partition) (orbitwatch_messages_total{outcome="stored"})')
        assert {r["metric"]["partition"] for r in partitions} <= {"0", "1", "2", "3"}
        assert sum(float(r["value"][1]) for r in partitions) == stored

        # Event-time freshness: the live satellite's newest frame is minutes old, the silent one's 7 hours.
        ages = _ages(prometheus)
        assert ages[LIVE] < 15 * 60, ages
        assert (HISTORY - STOPS_AFTER).total_seconds() - 120 < ages[SILENT] < HISTORY.total_seconds(), ages

        def stale() -> list[dict[str, Any]]:
            return [a for a in prometheus.alerts() if a["labels"]["alertname"] == "OrbitwatchSatelliteStale"]

        firing = _until(lambda: [a for a in stale() if a["state"] == "firing"], 30, "the stale-satellite alert")
        assert [a["labels"]["satellite"] for a in firing] == [SILENT]
        assert "no frame sampled in the last 7h" in firing[0]["annotations"]["summary"]
        assert [a["labels"]["satellite"] for a in stale()] == [SILENT]  # the live one is not even pending
        healthy = {"OrbitwatchDown", "OrbitwatchDeadLetterRateHigh", "OrbitwatchNoBatchCommitted"}
        assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] in healthy]

        # After a restart with nothing new to read, the silent satellite is still known (seeded from DuckDB).
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        daemon.start()  # its last-batch gauge is 0 until it commits a batch, and there is none to commit

        def restarted() -> bool:
            return _value(prometheus, "orbitwatch_last_batch_timestamp_seconds") == 0

        _until(restarted, 60, "a scrape of the restarted daemon")
        assert _ages(prometheus)[SILENT] > (HISTORY - STOPS_AFTER).total_seconds() - 120
    finally:
        prometheus.stop()
