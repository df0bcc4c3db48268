"""Transitions to notifications: alert items grouped per receiver, group and status. Pure, no I/O."""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl

from alerting.payload import FIRING, RESOLVED, AlertItem, Notification
from alerting.rules.vocabulary import ROUTING_LABEL
from alerting.state import STATE_SCHEMA, TRANSITION_SCHEMA, Row, conform


def _item(row: Row) -> AlertItem:
    status = RESOLVED if row["status"] == RESOLVED else FIRING
    return AlertItem(
        fingerprint=row["fingerprint"],
        status=status,
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        starts_at=row["started_at"],
        ends_at=row["ends_at"] if status == RESOLVED else None,
        event_at=row["event_at"],
        learned_at=row["learned_at"],
        playback=row["playback"],
    )


def firing_items(state: pl.DataFrame) -> list[AlertItem]:
    """The alerts of ``state`` that fire and whose firing was notified, as alert items (for re-sending)."""
    rows = conform(state, STATE_SCHEMA, "state").filter((pl.col("status") == FIRING) & pl.col("notified"))
    return [_item(row | {"ends_at": None}) for row in rows.iter_rows(named=True)]


def group_notifications(transitions: pl.DataFrame, receiver_for: Callable[[dict[str, str]], str]) -> list[Notification]:
    """One ``Notification`` per receiver, group and status (``updated`` alerts are ``firing``).

    ``receiver_for(labels)`` names an alert's receiver; it also sees ``playback`` ("true"/"false"), so
    alerts raised from played-back data can be routed to another hook. ``group_key`` is ``"<receiver>:<group JSON>"``,
    the same for a group's firing and resolved notifications. Firing notifications come first, then
    resolved ones (each by receiver and group), so an alert that fired and resolved within one evaluation
    ends resolved at the receiver; an alert appears once per notification (its last transition).
    """
    transitions = conform(transitions, TRANSITION_SCHEMA, "transitions")
    groups: dict[tuple[str, str, str], dict[str, AlertItem]] = {}
    for row in transitions.iter_rows(named=True):
        item = _item(row)
        routing = {**item.labels, ROUTING_LABEL: "true" if item.playback else "false"}
        key = (item.status, receiver_for(routing), row["group"])
        groups.setdefault(key, {})[item.fingerprint] = item
    ordered = sorted(groups.items(), key=lambda entry: (entry[0][0] != FIRING, entry[0][1:]))
    return [
        Notification(
            group_key=f"{receiver}:{group}",
            status=status,
            receiver=receiver,
            group_labels=json.loads(group),
            alerts=list(items.values()),
        )
        for (status, receiver, group), items in ordered
    ]
