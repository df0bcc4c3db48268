"""The ``alertmanager`` hook: orbitwatch pushes its alerts to Alertmanager's API as Prometheus does.

Operators who already run Alertmanager get its routing, grouping, inhibition, silences and receivers
(PagerDuty, Slack, e-mail, webhooks) for orbitwatch's alerts, without orbitwatch re-implementing them.

- **Delivery** (``deliver``, called by the outbox worker): every alert of a notification is POSTed to
  ``/api/v2/alerts`` of each configured Alertmanager, as Prometheus does: ``labels`` (the rule's, plus
  ``alertname`` = the rule name when absent), ``annotations`` (the rule's, plus ``event_time``,
  ``ground_learned_time``, ``playback``), ``startsAt`` (the event time the alert began), ``generatorURL``
  (``generator_url`` with ``{fingerprint}``, ``{rule}``, ``{rack_id}`` filled in, when set). A firing alert's
  ``endsAt`` is ``now + 4 * resend_interval_s`` (Prometheus' rule): Alertmanager resolves it by itself if
  orbitwatch stops re-sending it (the daemon died). A resolved alert's ``endsAt`` is its resolving window,
  at most now. The attempt succeeds when at least one Alertmanager accepts it (an HA pair gossips the
  rest, as Prometheus assumes); otherwise it is a ``DeliveryError`` and the outbox retries it, so nothing
  is lost while Alertmanager is down.
- **Re-sending** (``resend``, called every ``resend_interval_s`` by ``DeliveryWorker.resend_due``): the
  alerts that are firing and notified (not held back by an ack or a shelve) and routed to this hook, from
  the daemon's committed alert state, so Alertmanager never times them out. A re-send is idempotent and
  the next one follows shortly: it bypasses the outbox (a failed one is logged, not queued).
- **Silences** (``silenced``): the alerts Alertmanager holds as suppressed by a silence, read from
  ``GET /api/v2/alerts``, matched to orbitwatch's alerts by their label sets; ``orbitwatch alerts`` shows
  them, so the two never disagree about what a person already knows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from alerting.errors import DeliveryError
from alerting.payload import FIRING, AlertItem, Notification, annotations_of, rfc3339

log = logging.getLogger(__name__)

ALERTS_PATH = "/api/v2/alerts"
ALERTNAME = "alertname"
RULE_LABEL = "rule"
_MAX_DETAIL = 300


def utc_now() -> datetime:
    """The wall clock, timezone-aware."""
    return datetime.now(UTC)


def alert_labels(item: AlertItem) -> dict[str, str]:
    """The labels orbitwatch sends for ``item``: its own, plus ``alertname`` (the rule) when absent."""
    labels = dict(item.labels)
    if ALERTNAME not in labels and RULE_LABEL in labels:
        labels[ALERTNAME] = labels[RULE_LABEL]
    return labels


@dataclass(frozen=True, slots=True)
class Silenced:
    """An orbitwatch alert's label set that Alertmanager suppresses, and the silences doing it."""

    labels: dict[str, str]
    silenced_by: tuple[str, ...]


class AlertmanagerHook:
    """Pushes alerts to one or more Alertmanagers' ``/api/v2/alerts`` (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 5.0,
        resend_interval_s: float = 60.0,
        generator_url: str = "",
        headers: Mapping[str, str] | None = None,
        name: str = "alertmanager",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = name
        if not urls:
            raise DeliveryError(name, "alertmanager hook needs at least one URL in 'urls'", attempts=0)
        self.urls = [self._base(url) for url in urls]
        if timeout_s <= 0 or resend_interval_s <= 0:
            raise DeliveryError(name, "timeout_s and resend_interval_s must be positive", attempts=0)
        self.timeout_s = timeout_s
        self.resend_interval_s = resend_interval_s
        self.generator_url = generator_url
        self._clock = clock
        self._sent_labels: dict[str, dict[str, str]] = {}
        """Per fingerprint, the labels last pushed firing: a severity change changes the label set, so the
        old set is resolved with the new one (after a restart the old set expires by its ``endsAt``)."""
        own = {"User-Agent": "orbitwatch-alerting", "Content-Type": "application/json"}
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, headers={**(headers or {}), **own}
        )

    def _base(self, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise DeliveryError(self.name, f"alertmanager URL is invalid: {exc}", attempts=0) from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise DeliveryError(
                self.name,
                f"alertmanager URL must be http:// or https:// with a host (got {parsed.scheme!r}, {parsed.host!r})",
                attempts=0,
            )
        return url.rstrip("/")

    def __repr__(self) -> str:
        return f"AlertmanagerHook({self.name!r}, {self.urls!r})"

    # --- the alerts as Alertmanager's API takes them ---------------------------------------------------

    def valid_until(self, now: datetime) -> datetime:
        """A firing alert's ``endsAt``: Alertmanager resolves it then unless it was re-sent (Prometheus' 4x)."""
        return now + timedelta(seconds=4 * self.resend_interval_s)

    def postable(self, item: AlertItem, now: datetime) -> dict[str, Any]:
        """``item`` as one element of ``POST /api/v2/alerts``."""
        if item.status == FIRING or item.ends_at is None:  # (after the start even if the rack's clock leads ours)
            ends_at = max(self.valid_until(now), item.starts_at + timedelta(seconds=4 * self.resend_interval_s))
        else:  # resolved: a time in the past tells Alertmanager so; never before the start (it refuses that)
            ends_at = max(item.starts_at, min(item.ends_at, now))
        alert: dict[str, Any] = {
            "labels": alert_labels(item),
            "annotations": annotations_of(item),
            "startsAt": rfc3339(item.starts_at),
            "endsAt": rfc3339(ends_at),
        }
        url = item.generator_url or self._generator_url(item)
        if url:
            alert["generatorURL"] = url
        return alert

    def _generator_url(self, item: AlertItem) -> str:
        if not self.generator_url:
            return ""
        values = {
            "fingerprint": item.fingerprint,
            "rule": item.labels.get(RULE_LABEL, ""),
            "rack_id": item.labels.get("rack_id", ""),
        }
        return self.generator_url.format_map(
            {k: httpx.URL(v).raw_path.decode() if v else "" for k, v in values.items()}
        )

    # --- pushing ---------------------------------------------------------------------------------------

    def deliver(self, body: bytes, notification: Notification) -> None:
        """POST the notification's alerts; DeliveryError unless at least one Alertmanager accepted them."""
        self.post(notification.alerts)

    def resend(self, alerts: Iterable[AlertItem]) -> int:
        """POST the still-firing ``alerts`` again (see the module docstring); returns how many were sent."""
        firing = [a for a in alerts if a.status == FIRING]
        if firing:
            self.post(firing)
        return len(firing)

    def post(self, alerts: Sequence[AlertItem]) -> None:
        """One POST of ``alerts`` to each Alertmanager; DeliveryError naming each failure if none accepted."""
        now = self._clock()
        payload = [self.postable(item, now) for item in alerts]
        replaced = []  # label sets an alert no longer has (its severity changed): resolved now
        for item, alert in zip(alerts, payload, strict=True):
            before = self._sent_labels.get(item.fingerprint)
            if before is not None and before != alert["labels"]:
                replaced.append({**alert, "labels": before, "endsAt": rfc3339(max(item.starts_at, now))})
        payload += replaced
        failures = []
        for base in self.urls:
            problem = self._post_one(base, payload)
            if problem is None:
                continue
            failures.append(problem)
        if len(failures) == len(self.urls):
            raise DeliveryError(self.name, "; ".join(failures))
        for item, alert in zip(alerts, payload, strict=False):
            if item.status == FIRING:
                self._sent_labels[item.fingerprint] = alert["labels"]
            else:
                self._sent_labels.pop(item.fingerprint, None)
        for problem in failures:
            log.warning("alert hook '%s': %s (another Alertmanager accepted the alerts)", self.name, problem)

    def _post_one(self, base: str, payload: list[dict[str, Any]]) -> str | None:
        url = base + ALERTS_PATH
        try:
            response = self._client.post(url, json=payload)
        except httpx.TimeoutException as exc:
            return f"POST {url}: no answer within {self.timeout_s:g} s ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            return f"POST {url}: {type(exc).__name__}: {exc}"
        if response.is_success:
            return None
        detail = " ".join(response.text.split())[:_MAX_DETAIL]
        return f"POST {url}: HTTP {response.status_code} {response.reason_phrase}" + (f": {detail}" if detail else "")

    # --- reading back ----------------------------------------------------------------------------------

    def silenced(self) -> list[Silenced]:
        """The alerts the Alertmanagers hold as silenced (label sets and silence ids), merged over them.

        DeliveryError when none of them answered (the CLI reports it and lists without silences).
        """
        found: dict[tuple[tuple[str, str], ...], set[str]] = {}
        problems = []
        for base in self.urls:
            url = base + ALERTS_PATH
            try:
                response = self._client.get(url, params={"silenced": "true", "inhibited": "true", "active": "true"})
                response.raise_for_status()
                alerts = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                problems.append(f"GET {url}: {type(exc).__name__}: {exc}")
                continue
            for alert in alerts if isinstance(alerts, list) else []:
                silences = (alert.get("status") or {}).get("silencedBy") or []
                labels = alert.get("labels") or {}
                if silences and isinstance(labels, dict):
                    key = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
                    found.setdefault(key, set()).update(str(s) for s in silences)
        if problems and len(problems) == len(self.urls):
            raise DeliveryError(self.name, "; ".join(problems), attempts=0)
        return [Silenced(dict(key), tuple(sorted(ids))) for key, ids in found.items()]

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()


def silence_index(silenced: Iterable[Silenced]) -> dict[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Silence ids by label set (sorted pairs), for matching orbitwatch's alerts."""
    return {tuple(sorted(s.labels.items())): s.silenced_by for s in silenced}


def label_key(labels: Mapping[str, str], rule: str | None = None) -> tuple[tuple[str, str], ...]:
    """The label set orbitwatch sends for an alert with ``labels`` (``alertname`` added), as sorted pairs."""
    sent = dict(labels)
    name = sent.get(RULE_LABEL, rule)
    if ALERTNAME not in sent and name is not None:
        sent[ALERTNAME] = name
    return tuple(sorted(sent.items()))
