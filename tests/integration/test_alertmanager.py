"""Alerts through a real Alertmanager: grouped by its own ``group_by``, silenced by its API, nothing lost.

A daemon with an ``alertmanager`` hook ingests a simulated satellite with two overheating GPUs on two
racks; a real Alertmanager (Debian's ``prometheus-alertmanager``) routes to a real local webhook server.
Before the faults, one rack's alerts are silenced through Alertmanager's API. The fleet is sent in two
parts: the first ends while both GPUs are hot, the second holds the rest (both alerts resolve in it) and
is ingested while Alertmanager is stopped, so the resolutions wait in the outbox until it is back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orbitwatch.query_client import QueryClient
from simulator.config import FaultSpec, SimulationConfig, rack_id
from simulator.messages import generate
from simulator.produce import produce
from tests.helpers.alertmanager import Alertmanager, webhook_config
from tests.helpers.rules import write_rules
from tests.helpers.webhook import WebhookReceiver
from tests.integration.daemons import DaemonFactory, DaemonProcess

pytestmark = pytest.mark.integration

SILENCED, NOTIFIED = rack_id(0, 0), rack_id(0, 1)
FLEET = SimulationConfig(
    satellites=1,
    racks_per_satellite=2,
    duration_s=8 * 60,
    contact="continuous",
    seed=41,
    duplicate_rate=0.0,
    loss_rate=0.0,
    faults=[
        FaultSpec(kind="gpu_overheat", satellite=0, rack=0, node=1, gpu=2, start_s=60, duration_s=240),
        FaultSpec(kind="gpu_overheat", satellite=0, rack=1, node=3, gpu=5, start_s=60, duration_s=240),
    ],
)
FIRST_PART_S = 200  # both GPUs hot by then; they cool at 300 s, so both alerts resolve in the second part
RESEND_S = 1.0  # the hook re-sends firing alerts every second; Alertmanager expires them after 4 s
DOWN_S = 60.0  # Alertmanager stopped this long (a minute) while the resolutions are due
RULES = """
rules:
  - name: gpu_temperature
    scope: gpu
    threshold: {column: temp_max, op: ">=", warning: 83, critical: 90}
    annotations: {summary: "{rack_id} node {node} GPU {gpu} at {value:.1f} C"}
"""
GENERATOR_URL = "http://127.0.0.1:8080/alerts/{fingerprint}"


def _until(condition: Callable[[], object], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _ask(daemon: DaemonProcess, sql: str) -> int:
    client = QueryClient.discover(daemon.db, timeout_s=5.0)
    assert client is not None, "the daemon's query service is not up"
    with client:
        return int(client.query(sql)[0, 0])


def _bodies_about(receiver: WebhookReceiver, rack: str) -> list[dict[str, Any]]:
    return [b for b in receiver.json_bodies() if any(a["labels"].get("rack_id") == rack for a in b["alerts"])]


def _orbitwatch_alerts(daemon: DaemonProcess, rules: Path) -> dict[str, Any]:
    env = {**daemon.env, "ORBITWATCH_ALERTING__RULES_FILE": str(rules)}
    done = subprocess.run(
        [sys.executable, "-m", "orbitwatch.cli", "alerts", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """The webhook server Alertmanager notifies."""
    with WebhookReceiver() as webhook:
        yield webhook


def test_alerts_reach_alertmanager_grouped_silenced_and_survive_its_outage(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    manager = Alertmanager(tmp_path / "alertmanager", webhook_config(receiver.url, ["rack_id"])).start()
    try:
        silence = manager.silence({"alertname": "gpu_temperature", "rack_id": SILENCED})
        rules = write_rules(
            tmp_path,
            RULES,
            hook_name="am",
            hook_kind="alertmanager",
            hook_settings={"urls": [manager.url], "resend_interval_s": RESEND_S, "generator_url": GENERATOR_URL},
        )
        # Sampled in the last minutes (Alertmanager refuses an alert that starts after it ends).
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=FLEET.duration_s)
        generated, _truth = generate(FLEET.model_copy(update={"start": start}))
        messages = list(generated)
        cut = int(start.timestamp() * 1000) + FIRST_PART_S * 1000
        first, second = [m for m in messages if m.timestamp_ms < cut], [m for m in messages if m.timestamp_ms >= cut]
        produce(first, bootstrap, topic)
        daemon = daemon_factory(
            alerting__rules_file=str(rules),
            alerting__base_backoff_s="0.5",
            alerting__max_backoff_s="2",
            alerting__max_attempts="100",
        ).start()
        daemon.wait_for_progress(len(first) - 1)

        # Firing: Alertmanager groups by its own group_by (rack_id) and notifies the unsilenced rack only.
        firing = _until(
            lambda: [b for b in _bodies_about(receiver, NOTIFIED) if b["status"] == "firing"],
            60,
            "the firing notification",
        )
        body = firing[0]
        assert body["receiver"] == "hook"
        assert body["groupLabels"] == {"rack_id": NOTIFIED}
        alert = body["alerts"][0]
        assert alert["labels"]["alertname"] == "gpu_temperature"
        assert (alert["labels"]["node"], alert["labels"]["gpu"]) == ("3", "5")
        assert alert["annotations"]["summary"].startswith(f"{NOTIFIED} node 3 GPU 5 at ")
        assert alert["annotations"]["playback"] == "false"
        assert alert["generatorURL"].startswith("http://127.0.0.1:8080/alerts/")
        held = [a for a in manager.alerts() if a["labels"].get("rack_id") == SILENCED]
        assert held, "the silenced rack's alert did not reach Alertmanager"
        assert all(a["status"]["state"] == "suppressed" and a["status"]["silencedBy"] == [silence] for a in held)

        # orbitwatch alerts shows the silence (read from Alertmanager), on the silenced rack's alert only.
        listed = _orbitwatch_alerts(daemon, rules)
        by_rack = {a["rack_id"]: a["silenced_by"] for a in listed["alerts"] if a["status"] == "firing"}
        assert by_rack == {SILENCED: [silence], NOTIFIED: []}, listed
        assert "silences read from Alertmanager hook(s) am" in listed["silences"]

        # Re-sent: the firing alert outlives its 4 s validity in Alertmanager (no resolved notification).
        time.sleep(4 * RESEND_S + 2)
        active = [a for a in manager.alerts() if a["labels"].get("rack_id") == NOTIFIED]
        assert any(a["status"]["state"] == "active" for a in active), active
        assert not [b for b in _bodies_about(receiver, NOTIFIED) if b["status"] == "resolved"]

        # Alertmanager down while the resolutions are due: they wait in the outbox, retried.
        manager.stop()
        down_at = time.monotonic()
        produce(second, bootstrap, topic)
        daemon.wait_for_progress(len(messages) - 1)
        retried = "SELECT count(*) FROM alert_outbox WHERE state = 'pending' AND attempts >= 2"
        _until(lambda: _ask(daemon, retried) > 0, 30, "failed delivery attempts while Alertmanager is down")
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_at)))
        manager.start()

        _until(
            lambda: [b for b in _bodies_about(receiver, NOTIFIED) if b["status"] == "resolved"],
            60,
            "the resolved notification",
        )
        undelivered = "SELECT count(*) FROM alert_outbox WHERE state <> 'delivered'"
        _until(lambda: _ask(daemon, undelivered) == 0, 30, "every outbox row delivered")
        assert _ask(daemon, "SELECT count(*) FROM alert_outbox WHERE state = 'failed'") == 0
        assert _ask(daemon, "SELECT count(*) FROM alert_state") == 0  # both resolved in orbitwatch
        assert not _bodies_about(receiver, SILENCED), "a silenced alert was notified"
        statuses = [b["status"] for b in _bodies_about(receiver, NOTIFIED)]
        assert statuses[0] == "firing", statuses
        assert statuses[-1] == "resolved", statuses
    finally:
        manager.stop()
