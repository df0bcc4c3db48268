"""An alert webhook that accepts the connection and never answers: ingestion goes on, the outbox waits.

The rules file routes every notification to a webhook on a local server that accepts connections and
never sends a byte (tests/faults/servers.py); the hook's timeout is 3 s. Proved:

- ingestion is not held by delivery: while the first attempt hangs (the server has accepted one
  connection and no second), the daemon commits two more batches (or the rest of the backlog);
- the notifications stay pending in the outbox and are retried: attempts counted, the error says the
  webhook gave no answer within 3 s;
- SIGTERM, with an attempt hanging, exits 0 within 10 s;
- after a restart (nothing left to read, the hook still silent) the ground truth holds exactly once, the
  restarted daemon retried (more attempts counted) and every notification is still pending: none lost,
  none marked delivered, no attempt counted that the server did not receive.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from simulator.config import FaultSpec, SimulationConfig
from tests.faults.conftest import Daemons, TopicFactory
from tests.faults.ground_truth import assert_ground_truth, send
from tests.faults.servers import SilentServer
from tests.helpers.rules import write_rules
from tests.integration.daemons import CONSUMED_SQL, run_until_consumed
from tests.integration.test_alert_delivery_e2e import outbox_rows

pytestmark = pytest.mark.integration
PARTITIONS = 4
HOOK_TIMEOUT_S = 3
BATCH = 200
HOT = FaultSpec(kind="gpu_overheat", satellite=0, rack=1, node=3, gpu=5, start_s=2 * 60, duration_s=4 * 60)
FLEET = SimulationConfig(
    satellites=1,
    racks_per_satellite=2,
    duration_s=10 * 60,
    contact="continuous",
    seed=59,
    duplicate_rate=0.02,
    malformed_rate=0.005,
    faults=[HOT],
)
RULES = """
rules:
  - name: gpu_temperature
    scope: gpu
    threshold: {column: temp_max, op: ">=", warning: 83, critical: 90}
    for: 1m
    keep_firing_for: 2m
"""
SETTINGS = {
    "daemon__max_batch_messages": str(BATCH),
    "alerting__base_backoff_s": "0.2",
    "alerting__max_backoff_s": "0.5",
    "alerting__max_attempts": "100",
}
OUTBOX_SQL = "SELECT state, attempts, last_error FROM alert_outbox ORDER BY id"


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    """A webhook server that never answers."""
    server = SilentServer()
    yield server
    server.close()


def until_accepted(server: SilentServer, count: int, timeout_s: float = 60.0) -> float:
    """Wait until ``server`` has accepted ``count`` connections; returns when (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while server.accepted < count:
        assert time.monotonic() < deadline, f"{server.accepted} delivery attempts, {count} awaited"
        time.sleep(0.01)
    return time.monotonic()


def consumed(answer: pl.DataFrame) -> int:
    return int(answer[0, 0])


def test_a_webhook_that_never_answers_holds_up_neither_ingestion_nor_shutdown(
    make_topic: TopicFactory, daemons: Daemons, fault_bootstrap: str, silent: SilentServer, tmp_path: Path
) -> None:
    rules = write_rules(tmp_path, RULES, webhook_url=silent.url, timeout_s=HOOK_TIMEOUT_S)
    topic = make_topic(PARTITIONS)
    sent = send(fault_bootstrap, topic, FLEET, PARTITIONS)
    daemon = daemons(fault_bootstrap, topic, alerting__rules_file=str(rules), **SETTINGS)
    daemon.start()

    hung_at = until_accepted(silent, 1)  # the first delivery attempt hangs from here on
    at_hang = consumed(daemon.until_answer(CONSUMED_SQL, lambda _: True))
    # Two batches beyond the count at the hang (one may have been in flight already), or the whole backlog.
    enough = min(at_hang + 2 * BATCH, sent.messages)
    later = consumed(daemon.until_answer(CONSUMED_SQL, lambda a: consumed(a) >= enough, timeout_s=HOOK_TIMEOUT_S))
    assert time.monotonic() - hung_at < HOOK_TIMEOUT_S, "the first attempt timed out meanwhile"
    assert silent.accepted == 1, "the first attempt ended meanwhile"
    assert at_hang < sent.messages, "the backlog was ingested before the first delivery attempt"
    print(f"{at_hang} messages when the first attempt hung, {later} while it still hung")

    daemon.wait_for_progress(sent.messages - 1, timeout_s=60)  # the whole backlog, deliveries hanging
    until_accepted(silent, 2)  # retried after the first attempt timed out
    rows = daemon.until_answer(OUTBOX_SQL, lambda a: a.height > 0 and a["attempts"].sum() > 0)
    assert set(rows["state"]) == {"pending"}, rows
    assert any(f"no answer within {HOOK_TIMEOUT_S} s" in (e or "") for e in rows["last_error"]), rows

    until_accepted(silent, silent.accepted + 1)  # an attempt hangs right now
    asked = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0, daemon.log_text()[-3000:]
    assert time.monotonic() - asked <= 10, f"SIGTERM took {time.monotonic() - asked:.1f} s with a hook hanging"

    before = outbox_rows(daemon.db)
    run_until_consumed(daemon, sent.messages)  # restarted: nothing to read, the hook still silent
    after = outbox_rows(daemon.db)
    assert_ground_truth(daemon.db, sent)
    assert {r["state"] for r in after} == {"pending"}, after
    assert [r["id"] for r in after] == [r["id"] for r in before], "notifications appeared or vanished"
    assert sum(r["attempts"] for r in after) > sum(r["attempts"] for r in before) > 0, "not retried after the restart"
    assert all(r["delivered_at"] is None for r in after)
    assert sum(r["attempts"] for r in after) <= silent.accepted, "attempts counted that never reached the hook"
