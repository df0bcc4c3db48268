"""Alert hooks against real parts: a local HTTP server, real subprocesses, imported functions, a Kafka broker.

Checks the Alertmanager (version 4) body the hooks deliver, the webhook's HMAC signature and failures
(HTTP 500, timeout, connection refused), the command and python hooks' success and failures, the
backoff schedule, the settings factory, and the Kafka hook end to end (deliver, then consume it back).
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from alerting.errors import AlertingError, DeliveryError
from alerting.hooks.base import backoff_s, close_hook
from alerting.hooks.command import CommandHook
from alerting.hooks.kafka import KafkaHook
from alerting.hooks.python_function import PythonHook
from alerting.hooks.registry import build_hook
from alerting.hooks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookHook
from alerting.payload import ZERO_TIME, AlertItem, Notification, alertmanager_body, encode, fingerprint
from ingest.admin import create_topic
from ingest.settings import KafkaSettings
from ingest.sink import KafkaSink
from orbitwatch.broker import EmbeddedBroker, free_port
from orbitwatch.errors import ConfigError
from tests.helpers.webhook import WebhookReceiver

T0 = datetime(2031, 3, 4, 5, 6, 7, 250_000, tzinfo=UTC)
EXTERNAL_URL = "http://orbitwatch.ground:9464"
TOP_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


def _item(rack: str, status: str = "firing", playback: bool = False) -> AlertItem:
    labels = {"alertname": "GpuOverheat", "severity": "critical", "rack_id": rack}
    return AlertItem(
        fingerprint=fingerprint(labels),
        status=status,
        labels=labels,
        annotations={"summary": f"{rack}: gpu temp 97.0 C >= critical 90 C", "runbook": "ops/gpu-heat"},
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=9) if status == "resolved" else None,
        event_at=T0 - timedelta(minutes=42) if playback else T0,
        learned_at=T0 + timedelta(seconds=3),
        playback=playback,
    )


def _notification(status: str = "firing") -> Notification:
    return Notification(
        group_key='{}:{alertname="GpuOverheat"}',
        status=status,
        receiver="ops-pager",
        group_labels={"alertname": "GpuOverheat"},
        alerts=[_item("sat-1-rack-2", status), _item("sat-3-rack-1", status, playback=True)],
    )


def _body(status: str = "firing") -> tuple[bytes, Notification]:
    n = _notification(status)
    return encode(alertmanager_body(n, EXTERNAL_URL)), n


def _decoded(n: Notification, max_alerts: int = 0) -> dict[str, Any]:
    """The body as a receiver sees it (through JSON)."""
    decoded: dict[str, Any] = json.loads(encode(alertmanager_body(n, EXTERNAL_URL, max_alerts)))
    return decoded


def _parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1] + "+00:00")


def _assert_alertmanager(body: dict[str, Any]) -> None:
    """The structure every Alertmanager webhook receiver relies on."""
    assert set(body) == TOP_KEYS
    assert body["version"] == "4"
    assert body["status"] in ("firing", "resolved")
    assert isinstance(body["truncatedAlerts"], int)
    for alert in body["alerts"]:
        assert set(alert) == ALERT_KEYS
        assert alert["status"] in ("firing", "resolved")
        assert all(isinstance(v, str) for v in [*alert["labels"].values(), *alert["annotations"].values()])
        _parse_time(alert["startsAt"])
        if alert["status"] == "firing":
            assert alert["endsAt"] == ZERO_TIME
        else:
            assert _parse_time(alert["endsAt"]) >= _parse_time(alert["startsAt"])
        _parse_time(alert["annotations"]["event_time"])
        _parse_time(alert["annotations"]["ground_learned_time"])
        assert alert["annotations"]["playback"] in ("true", "false")


# --- payload ----------------------------------------------------------------------------------------------


def test_body_is_alertmanager_v4_with_both_times() -> None:
    n = _notification()
    body = _decoded(n)
    _assert_alertmanager(body)
    assert body["groupKey"] == n.group_key
    assert body["receiver"] == "ops-pager"
    assert body["externalURL"] == EXTERNAL_URL
    assert body["truncatedAlerts"] == 0
    assert body["groupLabels"] == {"alertname": "GpuOverheat"}
    assert body["commonLabels"] == {"alertname": "GpuOverheat", "severity": "critical"}
    # Both alerts share the runbook, learned time and start; event time and playback differ.
    assert body["commonAnnotations"] == {
        "runbook": "ops/gpu-heat",
        "ground_learned_time": "2031-03-04T05:06:10.25Z",
    }
    live, played = body["alerts"]
    assert live["startsAt"] == "2031-03-04T05:06:07.25Z"
    assert live["endsAt"] == ZERO_TIME
    assert live["annotations"]["event_time"] == "2031-03-04T05:06:07.25Z"
    assert live["annotations"]["playback"] == "false"
    assert played["annotations"]["event_time"] == "2031-03-04T04:24:07.25Z"
    assert played["annotations"]["playback"] == "true"
    labels = {"rack_id": "sat-3-rack-1", "severity": "critical", "alertname": "GpuOverheat"}
    assert played["fingerprint"] == fingerprint(labels) == fingerprint(dict(reversed(labels.items())))


def test_resolved_body_times_in_utc_and_truncation() -> None:
    plus2 = timezone(timedelta(hours=2))
    item = AlertItem(
        fingerprint="abc",
        status="resolved",
        labels={"alertname": "Stale"},
        annotations={},
        starts_at=datetime(2031, 1, 1, 12, 0, tzinfo=plus2),
        ends_at=datetime(2031, 1, 1, 12, 30, 0, 1, tzinfo=plus2),
        event_at=datetime(2031, 1, 1, 10, 29, tzinfo=UTC),
        learned_at=datetime(2031, 1, 1, 10, 31, tzinfo=UTC),
        playback=False,
    )
    n = Notification("g", "resolved", "r", {}, [item, item, item])
    body = _decoded(n, max_alerts=2)
    _assert_alertmanager(body)
    assert body["truncatedAlerts"] == 1
    (first, _) = body["alerts"]
    assert first["startsAt"] == "2031-01-01T10:00:00Z"
    assert first["endsAt"] == "2031-01-01T10:30:00.000001Z"


def test_encode_is_compact_sorted_utf8_and_deterministic() -> None:
    body = alertmanager_body(_notification(), "http://gr\u00fcnd")
    data = encode(body)
    assert data == encode(json.loads(data))
    text = data.decode("utf-8")
    assert "gr\u00fcnd" in text  # not \u-escaped
    assert '", "' not in text
    assert '": ' not in text
    assert list(json.loads(data)) == sorted(TOP_KEYS)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: replace(_item("r"), starts_at=datetime(2031, 1, 1)), "naive"),
        (lambda: replace(_item("r"), status="resolved"), "needs ends_at"),
        (lambda: replace(_item("r"), status="pending"), "status must be"),
        (lambda: Notification("g", "resolved", "r", {}, [_item("r")]), "firing while any alert fires"),
        (lambda: Notification("g", "firing", "r", {}, []), "no alerts"),
    ],
)
def test_invalid_notifications_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# --- webhook ----------------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP server on 127.0.0.1 that records requests; its ``answer`` (500 with a reason) or ``stall``
    (until released, at most 2 s) are set by a test."""
    with WebhookReceiver(
        path="/hooks/alerts?token=s3cr3t", error_body=b"disk full on relay\n", stall_s=2.0
    ) as receiver:
        yield receiver


def test_webhook_posts_signed_alertmanager_json(receiver: WebhookReceiver) -> None:
    body, n = _body()
    custom = {"X-Team": "ops", "content-type": "text/plain", SIGNATURE_HEADER: "forged"}  # own headers win
    hook = WebhookHook(receiver.url, timeout_s=2.0, hmac_secret="hunter2", headers=custom, name="pager")
    try:
        hook.deliver(body, n)
        hook.deliver(body, n)  # the pooled client serves a second call
    finally:
        hook.close()
    assert len(receiver.requests) == 2
    request = receiver.requests[0]
    assert request.method == "POST"
    assert request.path == "/hooks/alerts?token=s3cr3t"
    assert request.body == body
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-team"] == "ops"
    decoded = json.loads(request.body)
    _assert_alertmanager(decoded)
    assert decoded["groupKey"] == n.group_key
    expected = "sha256=" + hmac.new(b"hunter2", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
    assert abs(int(headers[TIMESTAMP_HEADER.lower()]) - time.time()) < 60
    wrong = "sha256=" + hmac.new(b"not-the-secret", request.body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], wrong)


def test_webhook_without_secret_is_unsigned(receiver: WebhookReceiver) -> None:
    body, n = _body("resolved")
    hook = build_hook("webhook", {"url": receiver.url})
    try:
        hook.deliver(body, n)
    finally:
        close_hook(hook)
    headers = {k.lower() for k in receiver.requests[0].headers}
    assert SIGNATURE_HEADER.lower() not in headers
    assert TIMESTAMP_HEADER.lower() not in headers
    _assert_alertmanager(json.loads(receiver.requests[0].body))


def test_webhook_secret_from_environment(receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_WEBHOOK_SECRET", "from-env")
    settings = {"url": receiver.url, "hmac_secret_env": "OPS_WEBHOOK_SECRET", "max_attempts": 8, "backoff_s": 2.0}
    hook = build_hook("webhook", settings, name="ops_webhook")
    body, n = _body()
    try:
        hook.deliver(body, n)
    finally:
        close_hook(hook)
    expected = "sha256=" + hmac.new(b"from-env", body, hashlib.sha256).hexdigest()
    headers = {k.lower(): v for k, v in receiver.requests[0].headers.items()}
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
    monkeypatch.delenv("OPS_WEBHOOK_SECRET")
    with pytest.raises(AlertingError, match="environment variable OPS_WEBHOOK_SECRET is not set"):
        build_hook("webhook", settings, name="ops_webhook")


def test_webhook_http_500_is_a_delivery_error(receiver: WebhookReceiver) -> None:
    receiver.answer = 500
    body, n = _body()
    hook = WebhookHook(receiver.url, name="pager")
    try:
        with pytest.raises(DeliveryError, match=r"HTTP 500 Internal Server Error: disk full on relay") as caught:
            hook.deliver(body, n)
    finally:
        hook.close()
    assert caught.value.hook == "pager"
    assert caught.value.attempts == 1
    assert "s3cr3t" not in str(caught.value)  # the query (a token) is not in the message
    assert len(receiver.requests) == 1  # one attempt, no retries inside the hook


def test_webhook_timeout_is_a_delivery_error(receiver: WebhookReceiver) -> None:
    receiver.stall = True
    body, n = _body()
    hook = WebhookHook(receiver.url, timeout_s=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError, match=r"no answer within 0.3 s \(ReadTimeout\)"):
            hook.deliver(body, n)
    finally:
        hook.close()
    assert time.monotonic() - started < 1.5


def test_webhook_connection_refused_is_a_delivery_error(receiver: WebhookReceiver) -> None:
    receiver.close()  # nothing listens on the port any more
    body, n = _body()
    hook = WebhookHook(receiver.url, timeout_s=2.0)
    try:
        with pytest.raises(DeliveryError, match="ConnectError"):
            hook.deliver(body, n)
    finally:
        hook.close()


@pytest.mark.parametrize("url", ["ftp://relay/alerts", "relay/alerts", "http://"])
def test_webhook_bad_url_fails_at_construction(url: str) -> None:
    with pytest.raises(DeliveryError, match="webhook URL") as caught:
        WebhookHook(url)
    assert caught.value.attempts == 0


# --- command ----------------------------------------------------------------------------------------------


def test_command_gets_the_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "received.json"
    script = (
        "import os, sys; data = sys.stdin.buffer.read(); "
        f"open({str(out)!r}, 'wb').write(data + b'\\n' + os.environ['ORBITWATCH_ALERT_STATUS'].encode())"
    )
    body, n = _body()
    CommandHook([sys.executable, "-c", script], timeout_s=10).deliver(body, n)
    data, _, status = out.read_bytes().rpartition(b"\n")
    assert data == body
    assert status == b"firing"
    _assert_alertmanager(json.loads(data))


def test_command_non_zero_exit_reports_code_and_last_stderr_line() -> None:
    script = (
        "import sys; sys.stdin.read(); print('connecting', file=sys.stderr); "
        "print('relay said no', file=sys.stderr); sys.exit(3)"
    )
    body, n = _body()
    hook = CommandHook([sys.executable, "-c", script], timeout_s=10, name="script")
    with pytest.raises(DeliveryError, match=r"exit code 3; stderr: relay said no$") as caught:
        hook.deliver(body, n)
    assert caught.value.hook == "script"


def test_command_timeout_kills_it() -> None:
    script = "import sys, time; print('waiting for relay', file=sys.stderr, flush=True); time.sleep(30)"
    body, n = _body()
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"did not finish within 0.5 s, killed; stderr: waiting for relay"):
        CommandHook([sys.executable, "-c", script], timeout_s=0.5).deliver(body, n)
    assert time.monotonic() - started < 5


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a killed child not yet reaped by init is a zombie


def test_command_timeout_kills_what_the_command_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); child.wait()"
    )
    body, n = _body()
    with pytest.raises(DeliveryError, match="killed"):
        CommandHook([sys.executable, "-c", script], timeout_s=1.0).deliver(body, n)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 3
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_command_missing_executable_fails_at_construction() -> None:
    with pytest.raises(DeliveryError, match="not an executable file or on PATH"):
        CommandHook(["/nonexistent/notify-ops", "--now"])
    with pytest.raises(DeliveryError, match="argv is empty"):
        CommandHook([])


# --- python -----------------------------------------------------------------------------------------------

received_payloads: list[dict[str, Any]] = []


def record_alert(payload: dict[str, Any]) -> None:
    """A python hook target: keeps what it was given."""
    received_payloads.append(payload)


def failing_alert(payload: dict[str, Any]) -> None:
    """A python hook target that always fails."""
    raise RuntimeError(f"pager down for {payload['receiver']}")


def test_python_hook_calls_the_function_with_the_decoded_body() -> None:
    received_payloads.clear()
    body, n = _body()
    hook = build_hook("python", {"target": f"{__name__}:record_alert"}, name="inproc")
    hook.deliver(body, n)
    assert [json.loads(body)] == received_payloads
    _assert_alertmanager(received_payloads[0])


def test_python_hook_exception_is_a_delivery_error() -> None:
    body, n = _body()
    with pytest.raises(DeliveryError, match=r"failing_alert raised RuntimeError: pager down for ops-pager"):
        PythonHook(f"{__name__}:failing_alert").deliver(body, n)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_for_orbitwatch:notify", "cannot import no_such_module_for_orbitwatch"),
        (f"{__name__}:no_such_function", "has no attribute no_such_function"),
        (f"{__name__}:received_payloads", "is a list, not a function"),
        (__name__, "not of the form 'package.module:function'"),
    ],
)
def test_python_hook_bad_target_fails_at_construction(target: str, message: str) -> None:
    with pytest.raises(DeliveryError, match=message) as caught:
        PythonHook(target, name="inproc")
    assert caught.value.hook == "inproc"
    assert caught.value.attempts == 0


# --- backoff ----------------------------------------------------------------------------------------------


def test_backoff_doubles_then_caps() -> None:
    assert [backoff_s(a) for a in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    delays = [backoff_s(a, base_s=0.5, cap_s=60.0) for a in range(200)]
    assert delays == sorted(delays)
    assert max(delays) == 60.0
    assert delays[-1] == 60.0
    assert backoff_s(10_000) == 300.0  # no overflow for very long outages


def test_backoff_jitter_stays_within_the_delay() -> None:
    random.seed(7)
    for attempt in range(1, 30):
        full = backoff_s(attempt, cap_s=100.0)
        jittered = backoff_s(attempt, cap_s=100.0, jitter=0.5)
        assert full * 0.5 <= jittered <= full


@pytest.mark.parametrize("kwargs", [{"attempt": -1}, {"attempt": 1, "base_s": 0.0}, {"attempt": 1, "jitter": 1.5}])
def test_backoff_refuses_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        backoff_s(**kwargs)


# --- factory ----------------------------------------------------------------------------------------------


def test_build_hook_makes_each_kind() -> None:
    assert isinstance(build_hook("command", {"argv": [sys.executable, "-V"]}), CommandHook)
    assert isinstance(build_hook("python", {"target": f"{__name__}:record_alert"}), PythonHook)
    assert isinstance(build_hook("python", {"callable": f"{__name__}:record_alert"}), PythonHook)
    webhook = build_hook("webhook", {"url": "https://relay.example/alerts", "hmac_secret": "x", "timeout_s": 2})
    assert isinstance(webhook, WebhookHook)
    assert "'x'" not in repr(webhook)
    close_hook(webhook)
    kafka = build_hook("kafka", {"bootstrap_servers": "127.0.0.1:9", "topic": "alerts"}, name="bus")
    assert isinstance(kafka, KafkaHook)
    assert kafka.name == "bus"
    close_hook(kafka)  # never connected: nothing to flush


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        ("pagerduty", {}, "unknown kind 'pagerduty'; expected one of webhook, command, python, kafka"),
        ("webhook", {}, "missing field 'url'"),
        ("webhook", {"url": "http://x", "retries": 3}, "unknown field 'retries'"),
        ("webhook", {"url": "http://x", "timeout_s": 0}, "timeout_s: Input should be greater than 0"),
        ("command", {"argv": []}, "argv: List should have at least 1 item"),
        ("kafka", {"topic": "alerts"}, "missing field 'bootstrap_servers'"),
        ("webhook", {"url": "http://x", "hmac_secret": "a", "hmac_secret_env": "B"}, "not both"),
        ("python", {"target": "m:f", "max_attempts": 0}, "max_attempts: Input should be greater than or equal to 1"),
    ],
)
def test_build_hook_names_bad_settings(kind: str, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(AlertingError, match=message) as caught:
        build_hook(kind, settings, name="ops")
    assert not isinstance(caught.value, DeliveryError)
    assert "alert hook 'ops'" in str(caught.value)


def test_kafka_sink_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="unknown producer settings"):
        KafkaSink("127.0.0.1:9092", "alerts", linger=5)
    with pytest.raises(ConfigError, match="acks are always 'all'"):
        KafkaSink("127.0.0.1:9092", "alerts", acks=1)
    with pytest.raises(ConfigError, match="not host:port"):
        KafkaSink("kafka-1", "alerts")
    with pytest.raises(DeliveryError, match="unknown producer settings"):
        build_hook("kafka", {"bootstrap_servers": "127.0.0.1:9", "topic": "a", "producer": {"nope": 1}})


def test_a_producer_setting_kafka_python_rejects_on_connect_is_a_delivery_error() -> None:
    hook = KafkaHook(KafkaSink("127.0.0.1:9", "alerts", api_version="not-a-version"), 1.0, name="bus")
    body, n = _body()
    try:
        with pytest.raises(DeliveryError, match="invalid producer settings") as raised:
            hook.deliver(body, n)
        assert raised.value.hook == "bus"
    finally:
        hook.close()


# --- kafka ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    """A real Kafka-protocol broker (Tansu), or ``ORBITWATCH_TEST_BOOTSTRAP``."""
    external = os.environ.get("ORBITWATCH_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.mark.integration
def test_kafka_hook_produces_keyed_by_group_and_is_read_back(bootstrap: str) -> None:
    topic = f"alerts-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, topic, 1)
    body, n = _body()
    explicit = build_hook("kafka", {"bootstrap_servers": bootstrap, "topic": topic, "timeout_s": 10}, name="bus")
    # Without bootstrap_servers, the hook writes to the ingest [kafka] cluster.
    inherited = build_hook("kafka", {"topic": topic}, name="bus2", kafka=KafkaSettings(bootstrap_servers=bootstrap))
    try:
        explicit.deliver(body, n)
        inherited.deliver(encode(alertmanager_body(_notification("resolved"), EXTERNAL_URL)), _notification("resolved"))
    finally:
        close_hook(explicit)
        close_hook(inherited)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records: list[Any] = []
        deadline = time.monotonic() + 10
        while len(records) < 2 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert [r.key for r in records] == [n.group_key.encode()] * 2
    assert records[0].value == body
    first, second = (json.loads(r.value) for r in records)
    _assert_alertmanager(first)
    _assert_alertmanager(second)
    assert (first["status"], second["status"]) == ("firing", "resolved")


# kafka-python 3.0.12 does not close the socket of a failed connection attempt (kafka/net/inet.py
# sock_connect): the garbage collector closes it with a ResourceWarning, which is not ours to fix. The test
# collects them itself, and keeps kafka's error log records (which hold them) from being captured past it.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_kafka_hook_unreachable_broker_is_a_delivery_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="kafka")
    body, n = _body()
    hook = KafkaHook(KafkaSink(f"127.0.0.1:{free_port()}", "alerts"), timeout_s=1.0, name="bus")
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError, match=r"hook 'bus' failed after 1 attempt: cannot connect to Kafka at"):
            hook.deliver(body, n)
    finally:
        hook.close()
        gc.collect()
    assert time.monotonic() - started < 5
