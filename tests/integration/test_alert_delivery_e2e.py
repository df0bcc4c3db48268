"""Alert delivery end to end when the hook misbehaves: an outage, a SIGKILL before delivery, a dead hook.

Each test ingests a fleet with injected faults with a daemon run as a real process, whose webhook hook
posts to a real local HTTP server that can be switched between answering 200 (up), 503 (down), 500
(broken) and dropping the connection without an answer (closed). Short retry settings keep it quick.

- Outage then recovery: while the hook is down, notifications pile up pending (their heads retried,
  with the error recorded) and ingestion completes; once it is up again, a restarted daemon delivers
  every notification exactly once per (fingerprint, status), firing before resolved, outbox delivered.
- SIGKILL between the data commit and the delivery: the notification and the data that raised it are
  committed together; after the kill and a restart with the hook up, it is delivered, once.
- A hook that keeps failing: each row ends ``failed`` after ``max_attempts`` with the HTTP error, and
  ingestion is not held up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from simulator.config import FaultSpec, SimulationConfig, rack_id
from storage.database import open_database
from storage.derived import DerivedTables
from storage.writer import HistoryWriter
from tests.helpers.rules import write_rules
from tests.helpers.webhook import CLOSE, Answer, WebhookReceiver
from tests.integration.daemons import GROUP_SETTINGS, DaemonFactory, DaemonProcess, run_until_consumed
from tests.integration.fleet import send_fleet

pytestmark = pytest.mark.integration
SESSION_TIMEOUT_S = int(GROUP_SETTINGS["ORBITWATCH_KAFKA__SESSION_TIMEOUT_MS"]) / 1000

HOT = FaultSpec(kind="gpu_overheat", satellite=0, rack=1, node=3, gpu=5, start_s=8 * 60, duration_s=8 * 60)
ECC = FaultSpec(kind="ecc_dbe", satellite=1, rack=0, node=2, gpu=1, start_s=10 * 60, duration_s=3 * 60)
FLEET = SimulationConfig(
    satellites=2,
    racks_per_satellite=2,
    duration_s=30 * 60,
    contact="continuous",
    seed=31,
    duplicate_rate=0.01,
    faults=[HOT, ECC],
)
HOT_GPU = (rack_id(0, 1), "3", "5")
ECC_GPU = (rack_id(1, 0), "2", "1")
RULES = """
rules:
  - name: gpu_temperature
    scope: gpu
    threshold: {column: temp_max, op: ">=", warning: 83, critical: 90}
    for: 2m
    keep_firing_for: 3m
  - name: gpu_double_bit_ecc
    scope: gpu
    threshold: {column: ecc_dbe_inc, op: ">", critical: 0}
    keep_firing_for: 5m
    group_by: [rule, satellite, rack_id]
"""
FAST_RETRIES = {"alerting__base_backoff_s": "0.2", "alerting__max_backoff_s": "1", "alerting__max_attempts": "100"}

UP, DOWN, BROKEN, CLOSED = 200, 503, 500, CLOSE
"""The webhook's answers: up, down, broken, closed (the connection dropped without an answer)."""


def alerts(hook: WebhookReceiver) -> list[tuple[str, str, tuple[str, str, str], str]]:
    """(fingerprint, status, (rack, node, gpu), rule) of every accepted alert, in arrival order."""
    return [
        (
            a["fingerprint"],
            a["status"],
            (a["labels"]["rack_id"], a["labels"].get("node", ""), a["labels"].get("gpu", "")),
            a["labels"]["rule"],
        )
        for body in hook.json_bodies()
        for a in body["alerts"]
    ]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A webhook server on 127.0.0.1 whose ``answer`` is switchable (starts up)."""
    with WebhookReceiver(answer=UP) as hook:
        yield hook


def outbox_rows(db: Path) -> list[dict[str, Any]]:
    """Every outbox row of a stopped daemon's shard, by id."""
    with duckdb.connect(str(db), read_only=True) as con:
        cursor = con.execute(
            """SELECT id, hook, group_key, status, fingerprints, state, attempts, last_error, delivered_at
               FROM alert_outbox ORDER BY id"""
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def run_idle(daemon: DaemonProcess, idle_s: float = 3, timeout_s: float = 60) -> None:
    """One ``run --exit-when-idle`` of the daemon, which must exit 0."""
    daemon.start("--exit-when-idle", str(idle_s))
    code = daemon.wait(timeout_s)
    assert code == 0, daemon.log_text()[-3000:]


def assert_exactly_once_in_order(hook: WebhookReceiver, expected: set[tuple[str, str, str]]) -> None:
    """Each (fingerprint, status) accepted once, firing before resolved, and both for each ``expected`` GPU."""
    accepted = alerts(hook)
    seen = [(fp, status) for fp, status, _, _ in accepted]
    duplicates = sorted({s for s in seen if seen.count(s) > 1})
    assert not duplicates, f"notified more than once: {duplicates}"
    order = {(fp, status): i for i, (fp, status) in enumerate(seen)}
    for fp in {fp for fp, _ in seen}:
        assert (fp, "firing") in order, f"{fp}: resolved without firing"
        if (fp, "resolved") in order:
            assert order[(fp, "firing")] < order[(fp, "resolved")], f"{fp}: resolved before firing"
    statuses: dict[tuple[str, str, str], set[str]] = {}
    for _, status, gpu, _ in accepted:
        statuses.setdefault(gpu, set()).add(status)
    assert statuses == {gpu: {"firing", "resolved"} for gpu in expected}, statuses


@pytest.mark.parametrize("outage", [DOWN, CLOSED], ids=["down", "closed"])
def test_outage_then_recovery_delivers_everything_exactly_once_in_order(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory, webhook: WebhookReceiver, tmp_path: Path, outage: Answer
) -> None:
    rules = write_rules(tmp_path, RULES, webhook_url=webhook.url)
    truth = send_fleet(bootstrap, topic, FLEET)
    webhook.answer = outage
    daemon = daemon_factory(alerting__rules_file=str(rules), daemon__max_batch_messages="500", **FAST_RETRIES)

    run_until_consumed(daemon, truth.messages_sent)  # ingestion completes while the hook is down
    assert daemon.messages_consumed() == truth.messages_sent
    rows = outbox_rows(daemon.db)
    assert len(rows) >= 4, rows  # firing and resolved of the hot GPU and of the ECC fault
    assert {r["state"] for r in rows} == {"pending"}, rows
    assert webhook.refused()
    assert not webhook.accepted()
    tried = [r for r in rows if r["attempts"] > 0]
    assert tried, "no delivery attempt was recorded during the outage"
    expected_error = "HTTP 503" if outage == DOWN else "RemoteProtocolError"
    for row in rows:
        if row["attempts"] > 0:
            assert expected_error in (row["last_error"] or ""), row
        else:
            assert row["last_error"] is None, row
    heads: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        heads.setdefault((row["hook"], row["group_key"]), row)
    assert all(h["attempts"] > 0 for h in heads.values()), f"a queue head was never tried: {heads}"
    assert sum(r["attempts"] for r in rows) == len(webhook.refused())

    webhook.answer = UP
    run_idle(daemon)  # nothing left to ingest: the restarted daemon's worker drains the outbox
    rows = outbox_rows(daemon.db)
    assert {r["state"] for r in rows} == {"delivered"}, rows
    assert_exactly_once_in_order(webhook, {HOT_GPU, ECC_GPU})
    assert len(webhook.accepted()) == len(rows)


def test_sigkill_after_the_commit_before_the_delivery_loses_nothing_and_repeats_nothing(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    rules = write_rules(tmp_path, RULES, webhook_url=webhook.url)
    config = FLEET.model_copy(update={"faults": [HOT]})
    truth = send_fleet(bootstrap, topic, config)
    webhook.answer = DOWN
    daemon = daemon_factory(alerting__rules_file=str(rules), daemon__max_batch_messages="200", **FAST_RETRIES)
    daemon.start()
    deadline = time.monotonic() + 60
    while not webhook.refused():  # the worker tried a row: the notification (and its data) is committed
        assert time.monotonic() < deadline, f"no delivery attempt: {daemon.log_text()[-3000:]}"
        assert daemon.process is not None
        assert daemon.process.poll() is None, daemon.log_text()[-3000:]
        time.sleep(0.05)
    daemon.kill()

    rows = outbox_rows(daemon.db)
    assert rows
    assert {r["state"] for r in rows} == {"pending"}, rows
    firing = [r for r in rows if r["status"] == "firing"]
    assert firing, rows
    # The alert was judged from the windows in memory; the open minute may have been held, unwritten, when the
    # daemon died: the next writer recomputes it from the committed raw rows (storage.open_windows).
    recovering = open_database(daemon.db)
    HistoryWriter(recovering, DerivedTables(recovering))
    recovering.close()
    with duckdb.connect(str(daemon.db), read_only=True) as con:
        hot_minutes = con.execute(
            """SELECT count(*) FROM gpu_rollups_1m
               WHERE rack_id = ? AND node = ? AND gpu = ? AND temp_max >= 90""",
            [HOT_GPU[0], int(HOT_GPU[1]), int(HOT_GPU[2])],
        ).fetchone()
        state = con.execute("SELECT rule, status FROM alert_state").fetchall()
    assert hot_minutes is not None
    assert hot_minutes[0] >= 2, "the data that raised the alert is not committed"
    assert ("gpu_temperature", "firing") in state, state
    consumed_at_kill = daemon.messages_consumed()

    time.sleep(SESSION_TIMEOUT_S + 1)  # let the group expire the killed member (see test_exactly_once)
    webhook.answer = UP
    run_until_consumed(daemon, truth.messages_sent)
    rows = outbox_rows(daemon.db)
    assert {r["state"] for r in rows} == {"delivered"}, rows
    keys = [(tuple(r["fingerprints"]), r["status"]) for r in rows]
    assert len(keys) == len(set(keys)), f"a notification was enqueued twice across the restart: {rows}"
    assert_exactly_once_in_order(webhook, {HOT_GPU})
    assert consumed_at_kill < truth.messages_sent, "the kill landed after the whole fleet was ingested"


def test_a_hook_that_keeps_failing_ends_failed_and_does_not_hold_up_ingestion(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    rules = write_rules(tmp_path, RULES, webhook_url=webhook.url)
    truth = send_fleet(bootstrap, topic, FLEET)
    webhook.answer = BROKEN
    settings = {**FAST_RETRIES, "alerting__max_attempts": "3"}
    daemon = daemon_factory(alerting__rules_file=str(rules), daemon__max_batch_messages="500", **settings)

    run_until_consumed(daemon, truth.messages_sent)
    assert daemon.messages_consumed() == truth.messages_sent
    deadline = time.monotonic() + 30
    rows = outbox_rows(daemon.db)
    while any(r["state"] == "pending" for r in rows):  # the retry budget may outlast the first run
        assert time.monotonic() < deadline, f"rows still pending: {rows}"
        run_idle(daemon)
        rows = outbox_rows(daemon.db)
    assert len(rows) >= 4, rows
    for row in rows:
        assert row["state"] == "failed", row
        assert row["attempts"] == 3, row
        assert "HTTP 500" in (row["last_error"] or ""), row
        assert "failed after 3 attempts" in row["last_error"], row
        assert row["delivered_at"] is None
    assert len(webhook.refused()) == 3 * len(rows)
    assert not webhook.accepted()
