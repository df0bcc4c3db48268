"""The alert outbox and its delivery worker, against a real DuckDB file and a real local HTTP server.

Checks: notifications exist exactly when the transaction that enqueued them commits; retries with
backoff while the receiver is down, then one delivery per row; the visible ``failed`` state after the
retry budget; delivery after a SIGKILL between the data commit and the delivery; at-least-once after a
crash between the delivery and its record; order within a group; DuckDB's concurrency between the
writer's transactions and the worker's cursor; ingestion speed while the worker waits on a slow receiver.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from alerting import outbox
from alerting.delivery import DeliveryWorker
from alerting.hooks.base import Hook
from alerting.hooks.webhook import WebhookHook
from alerting.outbox import enqueue, notification_from_body, summary
from alerting.payload import AlertItem, Notification, alertmanager_body, encode, fingerprint
from storage.alert_schema import OUTBOX_DDL
from tests.helpers.webhook import WebhookReceiver

T0 = datetime(2031, 3, 4, 5, 6, 7, 250_000, tzinfo=UTC)
EXTERNAL_URL = "http://orbitwatch.ground:9464"
REPO = Path(__file__).resolve().parent.parent


def _item(rack: str, status: str) -> AlertItem:
    labels = {"alertname": "GpuOverheat", "severity": "critical", "rack_id": rack}
    return AlertItem(
        fingerprint=fingerprint(labels),
        status=status,
        labels=labels,
        annotations={"summary": f"{rack}: gpu temp 97.0 C"},
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=9) if status == "resolved" else None,
        event_at=T0 - timedelta(minutes=3),
        learned_at=T0 + timedelta(seconds=3),
        playback=status == "resolved",
    )


def _notification(rack: str = "sat-1-rack-2", status: str = "firing") -> Notification:
    return Notification(
        group_key=f'{{}}:{{rack_id="{rack}"}}',
        status=status,
        receiver="ops-pager",
        group_labels={"rack_id": rack},
        alerts=[_item(rack, status)],
    )


def _body(n: Notification) -> bytes:
    return encode(alertmanager_body(n, EXTERNAL_URL))


def _create(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    for statement in OUTBOX_DDL:
        con.execute(statement)
    con.execute("CREATE TABLE readings (batch BIGINT NOT NULL, i BIGINT NOT NULL, v DOUBLE NOT NULL)")
    return con


def _rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = con.sql("SELECT * FROM alert_outbox ORDER BY id").pl().to_dicts()
    return rows


def _commit(con: duckdb.DuckDBPyConnection, pairs: list[tuple[str, Notification]], now: datetime = T0) -> None:
    con.execute("BEGIN TRANSACTION")
    enqueue(con, pairs, now, EXTERNAL_URL)
    con.execute("COMMIT")


# --- a real receiver -------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP server on 127.0.0.1: answers 200, or 503 with a reason (``answer``, ``fail_next``)."""
    with WebhookReceiver(fail_answer=503, error_body=b"relay restarting\n") as receiver:
        yield receiver


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = _create(tmp_path / "history.duckdb")
    yield connection
    connection.close()


def _webhook(receiver: WebhookReceiver, timeout_s: float = 5.0) -> WebhookHook:
    return WebhookHook(receiver.url, timeout_s=timeout_s, name="pager")


@pytest.fixture
def hook(receiver: WebhookReceiver) -> Iterator[WebhookHook]:
    webhook = _webhook(receiver)
    yield webhook
    webhook.close()


def _worker(con: duckdb.DuckDBPyConnection, hooks: dict[str, Hook], **kwargs: Any) -> DeliveryWorker:
    return DeliveryWorker(con.cursor, hooks, jitter=0.0, **kwargs)


# --- transactions ----------------------------------------------------------------------------------------


def test_only_committed_notifications_are_delivered_once(
    con: duckdb.DuckDBPyConnection, receiver: WebhookReceiver, hook: WebhookHook
) -> None:
    n = _notification()
    worker = _worker(con, {"pager": hook})
    try:
        con.execute("BEGIN TRANSACTION")
        assert enqueue(con, [("pager", n)], T0, EXTERNAL_URL) == 1
        assert worker.run_once(T0).due == 0  # the worker's cursor does not see an open transaction's rows
        con.execute("ROLLBACK")
        assert worker.run_once(T0).due == 0
        assert receiver.requests == []
        assert summary(con) == {"pending": 0, "delivered": 0, "failed": 0}

        con.execute("BEGIN TRANSACTION")
        enqueue(con, [("pager", n)], T0, EXTERNAL_URL)
        assert worker.run_once(T0).due == 0
        con.execute("COMMIT")
        stats = worker.run_once(T0 + timedelta(seconds=1))
        assert (stats.due, stats.delivered) == (1, 1)
        assert worker.run_once(T0 + timedelta(seconds=60)).due == 0  # delivered once
    finally:
        worker.close()
    assert receiver.delivered() == [_body(n)]
    [row] = _rows(con)
    assert bytes(row["body"]) == _body(n)
    assert (row["hook"], row["group_key"], row["status"]) == ("pager", n.group_key, "firing")
    assert row["fingerprints"] == [n.alerts[0].fingerprint]
    assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 1, None)
    assert row["delivered_at"] == T0 + timedelta(seconds=1)
    assert row["next_attempt_at"] is None
    assert row["created_at"] == T0
    assert summary(con) == {"pending": 0, "delivered": 1, "failed": 0}
    # The hook gets the notification back from the stored body.
    assert _body(notification_from_body(_body(n))) == _body(n)
    assert outbox.purge_delivered(con, T0) == 0
    assert outbox.purge_delivered(con, T0 + timedelta(hours=1)) == 1


def test_enqueue_many_is_one_insert_in_list_order(con: duckdb.DuckDBPyConnection) -> None:
    pairs = [("pager", _notification(f"rack-{i % 7}", "firing" if i % 2 else "resolved")) for i in range(500)]
    _commit(con, pairs)
    rows = con.execute("SELECT group_key, status FROM alert_outbox ORDER BY id").fetchall()
    assert rows == [(n.group_key, n.status) for _, n in pairs]
    assert enqueue(con, [], T0, EXTERNAL_URL) == 0


# --- retries ---------------------------------------------------------------------------------------------


def test_receiver_down_then_back_retries_with_backoff_and_delivers_once(
    con: duckdb.DuckDBPyConnection, receiver: WebhookReceiver, hook: WebhookHook
) -> None:
    n = _notification()
    _commit(con, [("pager", n)])
    receiver.fail_next = 3
    worker = _worker(con, {"pager": hook}, base_backoff_s=1.0, max_attempts=8)
    at = [T0 + timedelta(seconds=s) for s in (0, 0.5, 1, 2.9, 3, 6.9, 7, 100)]
    try:
        done = [(worker.run_once(t).attempted, len(receiver.requests)) for t in at]
    finally:
        worker.close()
    # Attempts at 0, 1 (after 1 s), 3 (2 s more), 7 (4 s more); nothing in between; nothing after.
    assert done == [(1, 1), (0, 1), (1, 2), (0, 2), (1, 3), (0, 3), (1, 4), (0, 4)]
    assert [r.status for r in receiver.requests] == [503, 503, 503, 200]
    assert receiver.delivered() == [_body(n)]
    [row] = _rows(con)
    assert (row["state"], row["attempts"]) == ("delivered", 4)
    assert row["last_error"] == "attempt 3: POST " + receiver.url + ": HTTP 503 Service Unavailable: relay restarting"


def test_outage_of_many_groups_ends_with_each_delivered_once(
    con: duckdb.DuckDBPyConnection, receiver: WebhookReceiver, hook: WebhookHook
) -> None:
    receiver.answer = 503  # down
    pairs = [("pager", _notification(f"rack-{i}")) for i in range(6)]
    _commit(con, pairs)
    worker = _worker(con, {"pager": hook}, base_backoff_s=1.0, cap_backoff_s=4.0)
    try:
        now = T0
        for _ in range(20):  # 10 s of outage, a pass every 0.5 s
            worker.run_once(now)
            now += timedelta(seconds=0.5)
        assert summary(con)["pending"] == 6
        receiver.answer = 200  # back
        for _ in range(20):  # the longest wait is the cap, 4 s
            worker.run_once(now)
            now += timedelta(seconds=0.5)
    finally:
        worker.close()
    assert sorted(receiver.delivered()) == sorted(_body(n) for _, n in pairs)
    attempts = [row["attempts"] for row in _rows(con)]
    assert all(a >= 3 for a in attempts), attempts
    assert summary(con) == {"pending": 0, "delivered": 6, "failed": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_hook_that_keeps_failing_ends_failed_with_its_error(con: duckdb.DuckDBPyConnection) -> None:
    dead = WebhookHook(f"http://127.0.0.1:{_free_port()}/alerts", timeout_s=2.0, name="pager")
    _commit(con, [("pager", _notification()), ("pagr", _notification("sat-9-rack-1"))])
    worker = _worker(con, {"pager": dead}, max_attempts=3, base_backoff_s=1.0)
    try:
        stats = [worker.run_once(T0 + timedelta(seconds=s)) for s in (0, 1, 3, 1000)]
    finally:
        worker.close()
        dead.close()
    assert [(s.retried, s.failed) for s in stats] == [(1, 1), (1, 0), (0, 1), (0, 0)]
    failed, typo = _rows(con)
    assert (failed["state"], failed["attempts"], failed["next_attempt_at"]) == ("failed", 3, None)
    assert failed["last_error"].startswith("hook 'pager' failed after 3 attempts: POST http://127.0.0.1:")
    assert "ConnectError" in failed["last_error"]
    assert (typo["state"], typo["attempts"]) == ("failed", 0)
    assert typo["last_error"] == "no hook named 'pagr' is configured (configured: pager); not delivered"
    assert summary(con) == {"pending": 0, "delivered": 0, "failed": 2}


# --- crashes ---------------------------------------------------------------------------------------------

_CRASH = """
import os, signal, sys
from datetime import datetime
import duckdb
from alerting.outbox import enqueue
from tests.test_alert_delivery import EXTERNAL_URL, T0, _notification
con = duckdb.connect(sys.argv[1])
con.execute("BEGIN TRANSACTION")
con.execute("INSERT INTO readings VALUES (1, 1, 97.0)")
enqueue(con, [("pager", _notification())], T0, EXTERNAL_URL)
con.execute("COMMIT")
os.kill(os.getpid(), signal.SIGKILL)  # after the data commit, before any delivery
"""


def test_sigkill_between_commit_and_delivery_delivers_after_restart(
    tmp_path: Path, receiver: WebhookReceiver, hook: WebhookHook
) -> None:
    path = tmp_path / "history.duckdb"
    _create(path).close()
    argv = [sys.executable, "-c", _CRASH, str(path)]
    crashed = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=60, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    assert Path(f"{path}.wal").exists()  # the commit is in the WAL, not yet checkpointed
    con = duckdb.connect(str(path))  # the restart: replays the WAL
    worker = _worker(con, {"pager": hook})
    try:
        assert worker.run_once(T0).delivered == 1
    finally:
        worker.close()
    assert con.execute("SELECT count(*) FROM readings").fetchall() == [(1,)]
    assert receiver.delivered() == [_body(_notification())]
    con.close()


def test_crash_after_delivery_before_its_record_delivers_again(
    con: duckdb.DuckDBPyConnection, receiver: WebhookReceiver, hook: WebhookHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    _commit(con, [("pager", _notification())])

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise duckdb.IOException("simulated crash before the delivery was recorded")

    worker = _worker(con, {"pager": hook})
    try:
        with monkeypatch.context() as patch:
            patch.setattr(outbox, "mark_delivered", crash)
            with pytest.raises(duckdb.IOException):
                worker.run_once(T0)
        assert worker.run_once(T0).delivered == 1  # at-least-once: the receiver dedupes
    finally:
        worker.close()
    first, second = receiver.delivered()
    assert first == second
    decoded = [json.loads(first)["alerts"][0], json.loads(second)["alerts"][0]]
    assert {(a["fingerprint"], a["status"]) for a in decoded} == {(_notification().alerts[0].fingerprint, "firing")}


# --- order -----------------------------------------------------------------------------------------------


def test_resolved_never_overtakes_its_firing_and_a_waiting_group_blocks_only_itself(
    con: duckdb.DuckDBPyConnection, receiver: WebhookReceiver, hook: WebhookHook
) -> None:
    firing, resolved = _notification("rack-a", "firing"), _notification("rack-a", "resolved")
    other = _notification("rack-b", "firing")
    _commit(con, [("pager", firing), ("pager", resolved), ("pager", other)])
    receiver.fail_next = 1  # the firing's first attempt fails
    worker = _worker(con, {"pager": hook}, base_backoff_s=2.0)
    try:
        first = worker.run_once(T0)  # firing fails; the hook is not tried again in this pass
        second = worker.run_once(T0 + timedelta(seconds=1))  # rack-a waits for its retry; rack-b goes
        third = worker.run_once(T0 + timedelta(seconds=2))  # firing, then resolved, in one pass
    finally:
        worker.close()
    assert (first.retried, first.skipped) == (1, 2)
    assert (second.delivered, second.due) == (1, 1)
    assert third.delivered == 2
    assert receiver.delivered() == [_body(other), _body(firing), _body(resolved)]
    assert [r["attempts"] for r in _rows(con)] == [2, 1, 1]


# --- concurrency -----------------------------------------------------------------------------------------


def test_duckdb_appends_do_not_conflict_with_updates_of_other_rows(con: duckdb.DuckDBPyConnection) -> None:
    _commit(con, [("pager", _notification("rack-a")), ("pager", _notification("rack-b"))])
    cursor = con.cursor()
    try:
        con.execute("BEGIN TRANSACTION")  # the writer's batch: appends data and outbox rows
        con.execute("INSERT INTO readings VALUES (1, 1, 1.0)")
        enqueue(con, [("pager", _notification("rack-c"))], T0, EXTERNAL_URL)
        assert outbox.mark_delivered(cursor, 1, T0)  # the worker, meanwhile, on its cursor
        assert outbox.mark_retry(cursor, 2, "attempt 1: down", T0 + timedelta(seconds=1))
        con.execute("COMMIT")
        assert summary(con) == {"pending": 2, "delivered": 1, "failed": 0}
        assert not outbox.mark_delivered(cursor, 1, T0)  # only a pending row changes
        # Two transactions updating the same column of the same row conflict (other columns, or other rows,
        # do not): the writer must never update outbox rows.
        con.execute("BEGIN TRANSACTION")
        con.execute("UPDATE alert_outbox SET state = 'failed' WHERE id = 3")
        with pytest.raises(duckdb.TransactionException, match="Conflict"):
            outbox.mark_delivered(cursor, 3, T0)
        con.execute("ROLLBACK")
    finally:
        cursor.close()


def _ingest(con: duckdb.DuckDBPyConnection, seconds: float, batch0: int, errors: list[BaseException]) -> list[float]:
    """Commit batches (2,000 data rows and one notification) for ``seconds``; the duration of each batch."""
    durations: list[float] = []
    values = pl.DataFrame({"i": range(2000), "v": [float(i) for i in range(2000)]})
    end = time.monotonic() + seconds
    batch = batch0
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            con.execute("BEGIN TRANSACTION")
            con.register("batch_rows", values)
            con.execute("INSERT INTO readings SELECT ?, i, v FROM batch_rows", [batch])
            con.unregister("batch_rows")
            status = "resolved" if batch % 2 else "firing"
            enqueue(con, [("pager", _notification(f"rack-{batch // 2 % 5}", status))], datetime.now(UTC), EXTERNAL_URL)
            con.execute("COMMIT")
        except BaseException as exc:
            errors.append(exc)
            return durations
        durations.append(time.monotonic() - started)
        batch += 1
    return durations


def _ingest_on_thread(con: duckdb.DuckDBPyConnection, seconds: float, batch0: int) -> list[float]:
    errors: list[BaseException] = []
    result: list[list[float]] = []
    thread = threading.Thread(target=lambda: result.append(_ingest(con, seconds, batch0, errors)))
    thread.start()
    thread.join(seconds + 30)
    assert not errors, errors
    return result[0]


def test_worker_thread_never_blocks_the_writer(
    con: duckdb.DuckDBPyConnection, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="alerting.delivery")
    slow = _webhook(receiver, timeout_s=5.0)
    worker = DeliveryWorker(con.cursor, {"pager": slow})  # the default poll, 0.5 s
    try:
        baseline = _ingest_on_thread(con, 1.0, 0)
        receiver.delay_s = 1.0  # the receiver takes 1 s per request
        worker.start()
        while not receiver.requests:  # the worker is now waiting on the receiver
            time.sleep(0.01)
        during_slow = _ingest_on_thread(con, 1.0, len(baseline))
        receiver.delay_s = 0.0
        during_delivery = _ingest_on_thread(con, 2.0, len(baseline) + len(during_slow))
        deadline = time.monotonic() + 20
        while summary(con)["pending"] and time.monotonic() < deadline:
            worker.wake()
            time.sleep(0.05)
        assert worker.stop(10)
    finally:
        worker.stop(10)
        slow.close()
    normal, slowed, busy = (statistics.median(d) * 1000 for d in (baseline, during_slow, during_delivery))
    print(
        f"\ningest batches: {len(baseline)}/s alone (median {normal:.2f} ms), "
        f"{len(during_slow)}/s while the worker waits on a 1 s receiver (median {slowed:.2f} ms, "
        f"{slowed / normal - 1:+.0%}), {len(during_delivery) / 2:.0f}/s while it delivers "
        f"(median {busy:.2f} ms, {busy / normal - 1:+.0%})"
    )
    total = len(baseline) + len(during_slow) + len(during_delivery)
    assert summary(con) == {"pending": 0, "delivered": total, "failed": 0}
    received = receiver.delivered()
    assert len(received) == total  # each once: no retries were needed
    stored = [bytes(b) for (b,) in con.execute("SELECT body FROM alert_outbox ORDER BY id").fetchall()]
    for rack in range(5):  # each group in enqueue order (firing, resolved, firing, ...)
        key = f'{{}}:{{rack_id="rack-{rack}"}}'
        assert [b for b in received if json.loads(b)["groupKey"] == key] == [
            b for b in stored if json.loads(b)["groupKey"] == key
        ]
    assert con.execute("SELECT count(*) FROM readings").fetchall() == [(total * 2000,)]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert worker.last_error is None
    # Blocked, the writer would commit about one batch in the second the receiver stalls; the latency ratio
    # printed above is a figure of this noisy shared machine, not a pass mark.
    assert len(during_slow) >= len(baseline) // 2, "a slow receiver blocked ingestion"
