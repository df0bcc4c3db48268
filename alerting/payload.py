"""The JSON body every alert hook delivers: Alertmanager's webhook format, version 4.

Relays that understand Alertmanager webhooks (PagerDuty and Opsgenie bridges, chat relays, custom
receivers) can take orbitwatch's notifications unchanged::

    {"version": "4", "groupKey": ..., "truncatedAlerts": 0, "status": "firing" | "resolved",
     "receiver": ..., "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": ..., "alerts": [{"status", "labels", "annotations", "startsAt", "endsAt",
                                     "generatorURL", "fingerprint"}, ...]}

Times are RFC 3339 in UTC (``2024-05-01T12:00:00.25Z``); a firing alert's ``endsAt`` is
``0001-01-01T00:00:00Z``, as Alertmanager sends it. Telemetry has two clocks, so every alert also carries
them as annotations: ``event_time`` (on board, when it happened), ``ground_learned_time`` (when the ground
learned it) and ``playback`` (``"true"`` when it was learned from played-back frames, i.e. late).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

ALERTMANAGER_VERSION = "4"
FIRING = "firing"
RESOLVED = "resolved"
STATUSES = (FIRING, RESOLVED)
ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time, which Alertmanager sends as the ``endsAt`` of a firing alert."""

EVENT_TIME = "event_time"
GROUND_LEARNED_TIME = "ground_learned_time"
PLAYBACK = "playback"


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")


@dataclass(frozen=True)
class AlertItem:
    """One alert of a notification: a rule's state for one set of labels (e.g. one rack)."""

    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    event_at: datetime
    """When it happened, on board (event time)."""
    learned_at: datetime
    """When the ground learned it (the ground's clock)."""
    playback: bool
    """Learned from played-back (stored) frames, i.e. late."""
    generator_url: str = ""
    """Link back to what produced the alert (Alertmanager's ``generatorURL``); empty if none."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"alert {self.fingerprint}: status must be one of {STATUSES}, got {self.status!r}")
        if self.status == RESOLVED and self.ends_at is None:
            raise ValueError(f"alert {self.fingerprint}: a resolved alert needs ends_at")
        for name in ("starts_at", "ends_at", "event_at", "learned_at"):
            value = getattr(self, name)
            if value is not None:
                _require_aware(f"alert {self.fingerprint}: {name}", value)


@dataclass(frozen=True)
class Notification:
    """One message to a receiver: a group of alerts sharing ``group_labels``."""

    group_key: str
    status: str
    """``firing`` while any alert of the group fires, else ``resolved`` (Alertmanager's rule)."""
    receiver: str
    group_labels: dict[str, str]
    alerts: list[AlertItem] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"notification {self.group_key}: status must be one of {STATUSES}, got {self.status!r}")
        if not self.alerts:
            raise ValueError(f"notification {self.group_key}: has no alerts")
        expected = FIRING if any(a.status == FIRING for a in self.alerts) else RESOLVED
        if self.status != expected:
            raise ValueError(
                f"notification {self.group_key}: status {self.status!r} but its alerts make it {expected!r} "
                "(firing while any alert fires)"
            )


def rfc3339(value: datetime) -> str:
    """``value`` in UTC as RFC 3339 with a ``Z``, fractional seconds without trailing zeros (Go's RFC3339Nano)."""
    _require_aware("time", value)
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit identity of a label set (independent of order), like Alertmanager's."""
    digest = hashlib.sha256()
    for name in sorted(labels):
        digest.update(name.encode())
        digest.update(b"\xff")
        digest.update(labels[name].encode())
        digest.update(b"\xff")
    return digest.hexdigest()[:16]


def annotations_of(item: AlertItem) -> dict[str, str]:
    """The item's annotations plus its two times and playback flag (which win over same-named ones)."""
    return {
        **item.annotations,
        EVENT_TIME: rfc3339(item.event_at),
        GROUND_LEARNED_TIME: rfc3339(item.learned_at),
        PLAYBACK: "true" if item.playback else "false",
    }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map has with the same value (Alertmanager's commonLabels/commonAnnotations)."""
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def alertmanager_body(n: Notification, external_url: str, max_alerts: int = 0) -> dict[str, object]:
    """The Alertmanager webhook body (version 4) of ``n``; ``external_url`` links back to orbitwatch.

    ``max_alerts`` > 0 keeps only the first that many alerts and counts the others in ``truncatedAlerts``
    (Alertmanager's ``max_alerts``); common labels and annotations are computed over the alerts sent.
    """
    if max_alerts < 0:
        raise ValueError(f"max_alerts must be >= 0, got {max_alerts}")
    sent = n.alerts[:max_alerts] if max_alerts else n.alerts
    annotations = [annotations_of(item) for item in sent]
    alerts: list[dict[str, object]] = []
    for item, annotated in zip(sent, annotations, strict=True):
        ends_at = ZERO_TIME if item.status == FIRING or item.ends_at is None else rfc3339(item.ends_at)
        alerts.append(
            {
                "status": item.status,
                "labels": dict(item.labels),
                "annotations": annotated,
                "startsAt": rfc3339(item.starts_at),
                "endsAt": ends_at,
                "generatorURL": item.generator_url,
                "fingerprint": item.fingerprint,
            }
        )
    return {
        "version": ALERTMANAGER_VERSION,
        "groupKey": n.group_key,
        "truncatedAlerts": len(n.alerts) - len(sent),
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": _common([item.labels for item in sent]),
        "commonAnnotations": _common(annotations),
        "externalURL": external_url,
        "alerts": alerts,
    }


def encode(body: Mapping[str, object]) -> bytes:
    """Compact JSON with sorted keys, UTF-8 (the bytes hooks send and sign); NaN is refused."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False).encode()
