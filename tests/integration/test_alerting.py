"""Alerts end to end: injected faults raise grouped notifications at a real webhook server, and resolve.

A fleet with an overheating GPU and a double-bit ECC fault on two racks (and healthy racks beside them) is
ingested by a daemon with a rules file; its webhook hook posts to a real local HTTP server. The server
must receive Alertmanager-format notifications: firing for the faulty GPUs, resolved once the fault is
over, each (fingerprint, status) once, none about a healthy rack; the outbox must end delivered.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest

from simulator.config import FaultSpec, SimulationConfig, rack_id
from tests.integration.daemons import DaemonFactory, run_until_consumed
from tests.integration.fleet import send_fleet

pytestmark = pytest.mark.integration

FLEET = SimulationConfig(
    satellites=2,
    racks_per_satellite=2,
    duration_s=30 * 60,
    contact="continuous",
    seed=31,
    duplicate_rate=0.01,
    faults=[
        FaultSpec(kind="gpu_overheat", satellite=0, rack=1, node=3, gpu=5, start_s=8 * 60, duration_s=8 * 60),
        FaultSpec(kind="ecc_dbe", satellite=1, rack=0, node=2, gpu=1, start_s=10 * 60, duration_s=3 * 60),
    ],
)
RULES = """
rules:
  - name: gpu_temperature
    scope: gpu
    threshold: {{column: temp_max, op: ">=", warning: 83, critical: 90}}
    for: 2m
    keep_firing_for: 3m
    annotations: {{summary: "{{rack_id}} node {{node}} GPU {{gpu}} at {{value:.1f}} C"}}
  - name: gpu_heating
    scope: gpu
    rate: {{column: temp_max, per_minutes: 2, op: ">", warning: 5}}
  - name: gpu_double_bit_ecc
    scope: gpu
    threshold: {{column: ecc_dbe_inc, op: ">", critical: 0}}
    keep_firing_for: 5m
    group_by: [rule, satellite, rack_id]
hooks:
  - name: pager
    kind: webhook
    settings: {{url: "{url}", timeout_s: 2}}
routes:
  - match: {{}}
    hook: pager
"""


class Receiver(BaseHTTPRequestHandler):
    """Records every POSTed JSON body."""

    bodies: ClassVar[list[dict[str, Any]]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.bodies.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def webhook() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 recording the notifications it receives."""
    Receiver.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()
    server.server_close()


def test_injected_faults_are_notified_grouped_and_resolved_and_healthy_racks_are_not(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory, webhook: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(url=webhook))
    truth = send_fleet(bootstrap, topic, FLEET)
    daemon = daemon_factory(alerting__rules_file=str(rules), daemon__max_batch_messages="500")
    run_until_consumed(daemon, truth.messages_sent)
    with duckdb.connect(str(daemon.db), read_only=True) as con:
        states = dict(con.execute("SELECT state, count(*) FROM alert_outbox GROUP BY ALL").fetchall())
    assert states.get("pending", 0) == 0, states
    assert states.get("failed", 0) == 0, states

    alerts = [(body["status"], alert) for body in Receiver.bodies for alert in body["alerts"]]
    assert Receiver.bodies
    assert all(body["version"] == "4" for body in Receiver.bodies)
    seen = [(a["fingerprint"], a["status"]) for _, a in alerts]
    assert len(seen) == len(set(seen)), "a (fingerprint, status) was notified twice"

    hot_rack, ecc_rack = rack_id(0, 1), rack_id(1, 0)
    hot = [a for _, a in alerts if a["labels"]["rule"] == "gpu_temperature"]
    assert {(a["labels"]["rack_id"], a["labels"]["node"], a["labels"]["gpu"]) for a in hot} == {(hot_rack, "3", "5")}
    assert {a["status"] for a in hot} == {"firing", "resolved"}
    ecc = [a for _, a in alerts if a["labels"]["rule"] == "gpu_double_bit_ecc"]
    assert {(a["labels"]["rack_id"], a["labels"]["node"], a["labels"]["gpu"]) for a in ecc} == {(ecc_rack, "2", "1")}
    assert {a["status"] for a in ecc} == {"firing", "resolved"}
    # A rate rule (it needs the windows before the batch's): the overheating GPU heats fast, but so does a
    # GPU whose node gets a new tenant (idle to busy is +30 C), so it fires on healthy racks too.
    heating = {
        (a["labels"]["rack_id"], a["labels"]["node"], a["labels"]["gpu"])
        for _, a in alerts
        if a["labels"]["rule"] == "gpu_heating"
    }
    assert (hot_rack, "3", "5") in heating
    healthy = {rack_id(s, r) for s in range(2) for r in range(2)} - {hot_rack, ecc_rack}
    assert not [a for _, a in alerts if a["labels"]["rack_id"] in healthy and a["labels"]["rule"] != "gpu_heating"]
    for _, alert in alerts:
        assert {"event_time", "ground_learned_time", "playback"} <= set(alert["annotations"])
