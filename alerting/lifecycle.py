"""The alert lifecycle: held and clear windows in, the new alert state and its transitions out.

Pure functions, no I/O and no clock: the caller passes the ground's clock ``as_of`` and persists the state
(``alerting.tables``, table ``storage.tables.ALERT_STATE``). One evaluation is::

    held, clear = observe(rules, frames, context)            # alerting.observe
    step = advance(state, held, clear, as_of, rules)         # this module: new state + transitions
    delivery = suppressed(step.transitions, step.state, as_of)  # alerting.suppression: acks and shelves
    notifications = group_notifications(delivery.notify, receiver_for)  # alerting.grouping
    # deliver, then store delivery.state (state_rows) in the same transaction as the windows

**Inputs** (``alerting.observe``): ``held`` (``RUN_SCHEMA``), the windows where a condition held, and
``clear`` (``CLEAR_SCHEMA``), those evaluated this time where it did not. A window in both counts as held.

**State** (``alerting.state.STATE_SCHEMA``): one row per live alert (fingerprint), ``pending`` or
``firing``; a resolved alert leaves it. Per fingerprint, ``advance`` replays the windows newer than the
alert's ``last_held_at`` in event order (older ones were accounted for: evaluating a window twice is
idempotent, and a recomputed past does not rewind an alert), applying ``alerting.evaluate``'s contract:

- a held window starts a pending alert, or continues its run if it is the next window (rack_now: any
  judgement, since a clear one would have ended it); ``started_at`` is the run's start (the earliest
  ``run_start`` known). The alert fires at the window where ``event_at - started_at (+ 1 window) >= for``,
  counted across evaluations (so a run split over batches still fires): a ``firing`` transition;
- a clear window ends a pending alert silently; it resolves a firing one when it is at or after
  ``last_held_at + 1 window (rack_now: 0) + keep_firing_for``: a ``resolved`` transition. Until then a
  held window keeps the same alert firing (no new ``for``);
- severity: the worst level among held windows not yet aged out, a level ageing out like an alert
  resolving (at a held window at or after its last window's end + ``keep_firing_for``): escalation is
  immediate, de-escalation damped. A firing alert whose severity changed gets an ``updated`` transition.
  ``last_<severity>_at`` keep what that needs across evaluations; value, labels, summary and annotations
  are those of the latest held window at the alert's severity.

Transitions are *net* per fingerprint and evaluation (batches of played-back data cover many windows):
``firing`` if it fires (reporting the severity it has at the end), ``updated`` if it was and is firing
with another severity, ``resolved`` if it was firing and is not; an alert that fires and resolves within
one evaluation gets ``firing`` then ``resolved``. ``event_at`` is the window of the change (the firing
window, the last severity change, the resolving window), ``learned_at`` is ``as_of`` and ``playback`` is
``learned_at - event_at > playback_after`` (default ``PLAYBACK_AFTER``): raised from old data.

**Acks and shelves** (``alerting.suppression``) hold back notifications, never the lifecycle.

Not handled: a rule removed from the rules file leaves its alerts as they are (nothing evaluates them);
re-evaluating the windows of an alert that has already resolved (so left the state) fires it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from alerting.evaluate import RUN_SCHEMA, WINDOW
from alerting.observe import CLEAR_SCHEMA
from alerting.rules.rule import Rule
from alerting.rules.vocabulary import Scope, Severity
from alerting.state import STATE_SCHEMA, TRANSITION_SCHEMA, Row, conform, require_aware, rows_frame

PLAYBACK_AFTER = timedelta(minutes=10)
"""Alerts learned more than this after their event time are marked ``playback``."""

_SEVERITIES_WORST_FIRST: tuple[Severity, ...] = ("critical", "warning", "info")


@dataclass(frozen=True)
class Step:
    """The result of ``advance``: the new state and the transitions it made."""

    state: pl.DataFrame
    transitions: pl.DataFrame


def _step(scope: Scope) -> timedelta:
    """What a window adds to its event time to give its end: one minute, 0 for rack_now judgements."""
    return timedelta(0) if scope == "rack_now" else WINDOW


def _with_severity(labels: str, severity: str) -> str:
    """The labels JSON with ``severity`` set (unchanged text if it already is)."""
    decoded = json.loads(labels)
    if decoded.get("severity") == severity:
        return labels
    decoded["severity"] = severity
    return json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _current_severity(alert: Row, at: datetime, rule: Rule) -> Severity:
    """The worst level whose newest held window is ``at`` or has not aged out by ``at``."""
    for severity in _SEVERITIES_WORST_FIRST:
        last = alert[f"last_{severity}_at"]
        if last is not None and (last == at or at < last + _step(rule.scope) + rule.keep_firing_for):
            return severity
    raise AssertionError("a held window was just recorded")  # pragma: no cover


def _new_alert(window: Row, previous: Row | None) -> Row:
    """A pending alert starting at ``window``; acks and shelves of a previous run of it carry over."""
    keep = previous or {}
    return {
        "fingerprint": window["fingerprint"],
        "rule": window["rule"],
        "status": "pending",
        "severity": window["severity"],
        "started_at": window["run_start"],
        "fired_at": None,
        "last_held_at": window["event_at"],
        "last_info_at": None,
        "last_warning_at": None,
        "last_critical_at": None,
        "event_at": None,
        "learned_at": None,
        "playback": None,
        "notified": False,
        "acked_until": keep.get("acked_until"),
        "shelved_until": keep.get("shelved_until"),
        "_changed_at": window["event_at"],
    }


def _hold(alert: Row | None, window: Row, rule: Rule) -> Row:
    """``alert`` after held ``window`` (newer than its ``last_held_at``), before any firing."""
    contiguous = alert is not None and (
        rule.scope == "rack_now" or window["event_at"] - alert["last_held_at"] <= WINDOW
    )
    if alert is None or (alert["status"] == "pending" and not contiguous):
        alert = _new_alert(window, alert)
    else:
        alert = dict(alert)
        if alert["status"] == "pending":
            alert["started_at"] = min(alert["started_at"], window["run_start"])
    alert[f"last_{window['severity']}_at"] = window["event_at"]
    alert["last_held_at"] = window["event_at"]
    severity = _current_severity(alert, window["event_at"], rule)
    if window["severity"] == severity or "labels" not in alert:
        alert |= {name: window[name] for name in ("labels", "group", "summary", "annotations", "value")}
    if severity != alert["severity"]:
        alert["_changed_at"] = window["event_at"]
    alert["severity"] = severity
    alert["labels"] = _with_severity(alert["labels"], severity)
    return alert


def _transition(alert: Row, status: str, event_at: datetime, as_of: datetime, playback_after: timedelta) -> Row:
    return {
        **{name: alert[name] for name in ("fingerprint", "rule", "severity", "labels", "group", "summary")},
        **{name: alert[name] for name in ("annotations", "value", "started_at", "notified")},
        **{name: alert[name] for name in ("acked_until", "shelved_until")},
        "status": status,
        "event_at": event_at,
        "learned_at": as_of,
        "playback": as_of - event_at > playback_after,
        "ends_at": event_at if status == "resolved" else None,
    }


def _replay(
    before: Row | None,
    windows: Sequence[tuple[datetime, bool, Row]],
    rule: Rule,
    as_of: datetime,
    playback_after: timedelta,
) -> tuple[Row | None, list[Row]]:
    """One fingerprint: its alert after ``windows`` (event time, held, row) and its net transitions."""
    alert = before
    resolved: tuple[Row, datetime] | None = None
    for event_at, held, window in windows:
        if alert is not None and event_at <= alert["last_held_at"]:
            continue  # accounted for by an earlier evaluation
        if held:
            alert = _hold(alert, window, rule)
            held_for = event_at - alert["started_at"] + _step(rule.scope)
            if alert["status"] == "pending" and held_for >= rule.for_:
                playback = as_of - event_at > playback_after
                alert |= {"status": "firing", "fired_at": event_at, "event_at": event_at, "notified": False}
                alert |= {"learned_at": as_of, "playback": playback}
        elif alert is not None and alert["status"] == "pending":
            alert = None
        elif alert is not None and event_at >= alert["last_held_at"] + _step(rule.scope) + rule.keep_firing_for:
            resolved = (alert, event_at)
            alert = None
    was_firing = before is not None and before["status"] == "firing"
    is_firing = alert is not None and alert["status"] == "firing"
    out: list[Row] = []
    if alert is not None and is_firing and not was_firing:
        out.append(_transition(alert, "firing", alert["fired_at"], as_of, playback_after))
    elif alert is not None and is_firing and before is not None and alert["severity"] != before["severity"]:
        out.append(_transition(alert, "updated", alert["_changed_at"], as_of, playback_after))
    elif not is_firing and resolved is not None:
        gone, ends_at = resolved
        if not was_firing:
            out.append(_transition(gone, "firing", gone["fired_at"], as_of, playback_after))
        out.append(_transition(gone, "resolved", ends_at, as_of, playback_after))
    return alert, out


def advance(
    state: pl.DataFrame,
    held: pl.DataFrame,
    clear: pl.DataFrame,
    as_of: datetime,
    rules: Iterable[Rule],
    *,
    playback_after: timedelta = PLAYBACK_AFTER,
) -> Step:
    """The state after this evaluation's windows, and its transitions (module docstring).

    ``state``: ``STATE_SCHEMA`` (empty at first); ``held``: ``RUN_SCHEMA`` rows of one or more rules;
    ``clear``: ``CLEAR_SCHEMA`` rows; ``as_of``: the ground's clock (``learned_at``); ``rules``: at least
    the rules of ``held`` and ``clear`` (``ValueError`` otherwise). Alerts without new windows are unchanged.
    """
    require_aware("as_of", as_of)
    by_name = {rule.name: rule for rule in rules}
    state = conform(state, STATE_SCHEMA, "state")
    held = conform(held, RUN_SCHEMA, "held")
    clear = conform(clear, CLEAR_SCHEMA, "clear")
    unknown = sorted((set(held["rule"]) | set(clear["rule"])) - by_name.keys())
    if unknown:
        raise ValueError(f"no rule given for {', '.join(unknown)}")
    keys = ["fingerprint", "event_at"]
    touched = pl.concat([held.select("fingerprint"), state.select("fingerprint")]).unique()
    clear = clear.join(held.select(keys), on=keys, how="anti").join(touched, on="fingerprint", how="semi")

    windows: dict[str, list[tuple[datetime, bool, Row]]] = {}
    for row in held.iter_rows(named=True):
        windows.setdefault(row["fingerprint"], []).append((row["event_at"], True, row))
    for row in clear.iter_rows(named=True):
        windows.setdefault(row["fingerprint"], []).append((row["event_at"], False, row))
    states = {row["fingerprint"]: row for row in state.iter_rows(named=True)}

    transitions: list[Row] = []
    for fp, timeline in windows.items():
        timeline.sort(key=lambda item: item[0])
        rule = by_name[timeline[0][2]["rule"]]
        alert, made = _replay(states.get(fp), timeline, rule, as_of, playback_after)
        transitions += made
        if alert is None:
            states.pop(fp, None)
        else:
            states[fp] = alert
    new_state = rows_frame(states.values(), STATE_SCHEMA).sort("rule", "fingerprint")
    ordered = rows_frame(transitions, TRANSITION_SCHEMA).sort("rule", "fingerprint", maintain_order=True)
    return Step(new_state, ordered)
