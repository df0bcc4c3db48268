"""The ``alertmanager`` hook's bodies and its failover, against a real local HTTP server.

The end-to-end proof with a real Alertmanager is tests/integration/test_alertmanager.py; these check the
rules that decide what each POST carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerting.alertmanager import AlertmanagerHook
from alerting.errors import AlertingError, DeliveryError
from alerting.hooks.registry import build_hook
from alerting.payload import AlertItem
from orbitwatch.broker import free_port
from tests.helpers.webhook import WebhookReceiver

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=10)


def item(status: str = "firing", severity: str = "warning", ends_at: datetime | None = None) -> AlertItem:
    return AlertItem(
        fingerprint="f00d",
        status=status,
        labels={"rule": "gpu_temperature", "severity": severity, "rack_id": "sat-0001/rack-1"},
        annotations={"summary": "hot"},
        starts_at=STARTED,
        ends_at=ends_at,
        event_at=STARTED,
        learned_at=NOW,
        playback=False,
    )


@pytest.fixture
def manager() -> Iterator[WebhookReceiver]:
    """A local server standing in for Alertmanager (its URL has no path): it records each POSTed list of alerts."""
    with WebhookReceiver(path="") as receiver:
        yield receiver


def posted(manager: WebhookReceiver) -> list[dict[str, Any]]:
    lists: list[Any] = manager.json_bodies()  # each POST is a JSON list of alerts
    return [alert for body in lists for alert in body]


def test_a_firing_alert_is_valid_for_four_resend_intervals_and_names_its_rule() -> None:
    hook = AlertmanagerHook(["http://127.0.0.1:9093"], resend_interval_s=30, clock=lambda: NOW)
    alert = hook.postable(item(), NOW)
    assert alert["labels"] == {**item().labels, "alertname": "gpu_temperature"}
    assert alert["annotations"]["summary"] == "hot"
    assert alert["startsAt"] == "2026-11-01T11:50:00Z"
    assert alert["endsAt"] == "2026-11-01T12:02:00Z"
    assert "generatorURL" not in alert


def test_a_resolved_alert_ends_in_the_past_but_never_before_it_started() -> None:
    hook = AlertmanagerHook(["http://127.0.0.1:9093"])
    resolved = hook.postable(item("resolved", ends_at=NOW - timedelta(minutes=2)), NOW)
    assert resolved["endsAt"] == "2026-11-01T11:58:00Z"
    ahead = hook.postable(item("resolved", ends_at=NOW + timedelta(minutes=3)), NOW)  # the rack's clock leads
    assert ahead["endsAt"] == "2026-11-01T12:00:00Z"
    early = hook.postable(item("resolved", ends_at=STARTED - timedelta(minutes=1)), NOW)
    assert early["endsAt"] == early["startsAt"]


def test_the_generator_url_is_filled_in_and_escaped() -> None:
    hook = AlertmanagerHook(["http://am:9093"], generator_url="http://view:8080/racks/{rack_id}?alert={fingerprint}")
    assert hook.postable(item(), NOW)["generatorURL"] == "http://view:8080/racks/sat-0001/rack-1?alert=f00d"


def test_settings_are_checked_when_the_hook_is_built() -> None:
    with pytest.raises(AlertingError, match="generator_url"):
        build_hook("alertmanager", {"urls": ["http://am:9093"], "generator_url": "{tenant}"}, "am")
    with pytest.raises(AlertingError, match="urls"):
        build_hook("alertmanager", {"urls": []}, "am")
    with pytest.raises(DeliveryError, match="http:// or https://"):
        build_hook("alertmanager", {"urls": ["am:9093"]}, "am")


def test_a_severity_change_resolves_the_old_label_set(manager: WebhookReceiver) -> None:
    hook = AlertmanagerHook([manager.url], clock=lambda: NOW)
    hook.post([item(severity="warning")])
    hook.post([item(severity="critical")])
    first, *second = posted(manager)
    assert first["labels"]["severity"] == "warning"
    by_severity = {a["labels"]["severity"]: a for a in second}
    assert by_severity["critical"]["endsAt"] > "2026-11-01T12:00:00Z"
    assert by_severity["warning"]["endsAt"] == "2026-11-01T12:00:00Z"  # the old set resolved now
    hook.close()


def test_one_answering_alertmanager_is_enough_and_none_is_a_delivery_error(manager: WebhookReceiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    hook = AlertmanagerHook([dead, manager.url], timeout_s=2)
    hook.post([item()])
    assert len(posted(manager)) == 1
    alone = AlertmanagerHook([dead], timeout_s=2, name="am")
    with pytest.raises(DeliveryError, match=re.escape(f"POST {dead}/api/v2/alerts")):
        alone.post([item()])
    assert alone.resend([item("resolved", ends_at=NOW)]) == 0  # nothing firing: nothing re-sent, no error
    hook.close()
    alone.close()
