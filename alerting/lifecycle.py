"""The alert lifecycle: condition windows in, alert state, transitions and grouped notifications out.

Pure functions, no I/O and no clock: the caller passes the ground's clock ``as_of`` and persists the state
(``storage.alert_schema.STATE_DDL``). One evaluation is::

    held, clear = observe(rules, frames, context)            # or condition_windows / clear_windows per rule
    step = advance(state, held, clear, as_of, rules)         # new state + transitions
    delivery = suppressed(step.transitions, step.state, as_of)  # acks and shelves
    notifications = group_notifications(delivery.notify, receiver_for)
    # deliver, then store delivery.state (state_rows) in the same transaction as the windows

**Inputs.** ``held``: ``condition_windows`` of one or more rules, concatenated (``RUN_SCHEMA``): the windows
where a condition held. ``clear`` (``CLEAR_SCHEMA``: ``rule, fingerprint, event_at``): the windows (rack_now:
judgements) evaluated this time where it did **not** hold; without them nothing can resolve, since a
missing window means "nothing known" (``alerting.evaluate``). ``clear_windows``/``observe`` derive both
from the frames. A window in both counts as held.

**State** (``STATE_SCHEMA``): one row per live alert (fingerprint), ``pending`` or ``firing``; a resolved
alert leaves it. Per fingerprint, ``advance`` replays the windows newer than the alert's ``last_held_at``
in event order (older ones were accounted for: evaluating a window twice is idempotent, and a recomputed
past does not rewind an alert), applying ``alerting.evaluate``'s contract:

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

**Acks and shelves** (``acknowledge``, ``shelve``, ``suppressed``): the alert keeps its state and lifecycle;
while ``as_of < acked_until`` or ``as_of < shelved_until`` its ``firing``/``updated`` transitions are held
back. ``resolved`` is notified exactly when the alert's firing was (``notified``, or now), shelved or not,
so no receiver keeps an incident open forever; an alert that fired and resolved unseen stays silent. At
expiry the field is cleared, and an alert still firing with no suppression left is notified once more as
``firing`` (current severity, its original event and learned times), e.g. "still firing after the shelve".

Not handled: a rule removed from the rules file leaves its alerts as they are (nothing evaluates them);
re-evaluating the windows of an alert that has already resolved (so left the state) fires it again.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from alerting.evaluate import RUN_SCHEMA, UTC_US, WINDOW, condition_windows, instances
from alerting.payload import FIRING, RESOLVED, AlertItem, Notification
from alerting.rules import ROUTING_LABEL, HealthState, Rule, Scope, Severity

PLAYBACK_AFTER = timedelta(minutes=10)
"""Alerts learned more than this after their event time are marked ``playback``."""

STATE_SCHEMA: dict[str, pl.DataType] = {
    "fingerprint": pl.String(),
    "rule": pl.String(),
    "status": pl.String(),
    "severity": pl.String(),
    "labels": pl.String(),
    "group": pl.String(),
    "summary": pl.String(),
    "annotations": pl.String(),
    "value": pl.Float64(),
    "started_at": UTC_US,
    "fired_at": UTC_US,
    "last_held_at": UTC_US,
    "last_info_at": UTC_US,
    "last_warning_at": UTC_US,
    "last_critical_at": UTC_US,
    "event_at": UTC_US,
    "learned_at": UTC_US,
    "playback": pl.Boolean(),
    "notified": pl.Boolean(),
    "acked_until": UTC_US,
    "shelved_until": UTC_US,
}

STATE_SELECT = "SELECT " + ", ".join(f'"{name}"' for name in STATE_SCHEMA) + " FROM alert_state"
"""Reads the table's rows in ``STATE_SCHEMA`` order, for ``state_from_rows``."""

CLEAR_SCHEMA: dict[str, pl.DataType] = {"rule": pl.String(), "fingerprint": pl.String(), "event_at": UTC_US}
"""Windows (rack_now: judgements) evaluated where the rule's condition did not hold."""

TRANSITION_SCHEMA: dict[str, pl.DataType] = {
    "fingerprint": pl.String(),
    "rule": pl.String(),
    "status": pl.String(),
    "severity": pl.String(),
    "labels": pl.String(),
    "group": pl.String(),
    "summary": pl.String(),
    "annotations": pl.String(),
    "value": pl.Float64(),
    "started_at": UTC_US,
    "event_at": UTC_US,
    "learned_at": UTC_US,
    "playback": pl.Boolean(),
    "ends_at": UTC_US,
    "notified": pl.Boolean(),
    "acked_until": UTC_US,
    "shelved_until": UTC_US,
}
"""A change to notify. ``status``: firing|updated|resolved; ``started_at``: the alert's start (startsAt);
``ends_at``: the resolving window (resolved only); ``notified``, ``acked_until``, ``shelved_until``: the
alert's, for ``suppressed``."""

_Row = dict[str, Any]
_SEVERITIES_WORST_FIRST: tuple[Severity, ...] = ("critical", "warning", "info")
_HEALTH_STATES: tuple[HealthState, ...] = typing.get_args(HealthState)


@dataclass(frozen=True)
class Step:
    """The result of ``advance``: the new state and the transitions it made."""

    state: pl.DataFrame
    transitions: pl.DataFrame


@dataclass(frozen=True)
class Delivery:
    """The result of ``suppressed``: what to notify, what is held back, and the state to store."""

    notify: pl.DataFrame
    held_back: pl.DataFrame
    state: pl.DataFrame


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")


def _conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType], what: str) -> pl.DataFrame:
    """``frame``'s columns of ``schema``, in order and cast to it; ``ValueError`` naming missing columns."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")
    return frame.select(list(schema)).cast(pl.Schema(schema))


def _frame(rows: Iterable[_Row], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([tuple(row[name] for name in schema) for row in rows], schema=dict(schema), orient="row")


def _step(scope: Scope) -> timedelta:
    """What a window adds to its event time to give its end: one minute, 0 for rack_now judgements."""
    return timedelta(0) if scope == "rack_now" else WINDOW


# ---- Held and clear windows from frames -------------------------------------------------------------


def _all_windows(rule: Rule, frames: pl.DataFrame) -> pl.DataFrame:
    """``fingerprint, event_at`` of every row of ``frames``, held or not, each pair once.

    Uses ``instances`` with a probe rule of the same name and scope whose condition always holds: a
    fingerprint is defined by the rule name and the entity only (``alerting.evaluate.fingerprint``).
    """
    probe = Rule.model_validate({"name": rule.name, "scope": rule.scope, "state": {"in": list(_HEALTH_STATES)}})
    rows = frames.select(*rule.entity, rule.event_column).with_columns(pl.lit("ok").alias("state"))
    return instances(probe, rows).select("fingerprint", "event_at").unique(maintain_order=True)


def clear_windows(
    rule: Rule, frames: pl.DataFrame, context: pl.DataFrame | None = None, held: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The windows of ``frames`` where ``rule``'s condition did not hold (``CLEAR_SCHEMA``).

    ``held``: ``condition_windows(rule, frames, context)`` if already computed. A rate window without its
    earlier window has no rate, so it is clear (as in ``condition_windows``, where it ends a run).
    """
    if held is None:
        held = condition_windows(rule, frames, context)
    keys = ["fingerprint", "event_at"]
    clear = _all_windows(rule, frames).join(held.select(keys), on=keys, how="anti")
    return clear.select(pl.lit(rule.name, pl.String).alias("rule"), "fingerprint", "event_at")


def observe(
    rules: Iterable[Rule],
    frames: Mapping[Scope, pl.DataFrame],
    context: Mapping[Scope, pl.DataFrame] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(held, clear)`` of every rule whose scope has a frame in ``frames``, the inputs of ``advance``."""
    held_parts = [pl.DataFrame(schema=RUN_SCHEMA)]
    clear_parts = [pl.DataFrame(schema=CLEAR_SCHEMA)]
    for rule in rules:
        if rule.scope not in frames:
            continue
        frame = frames[rule.scope]
        held = condition_windows(rule, frame, (context or {}).get(rule.scope))
        held_parts.append(held)
        clear_parts.append(clear_windows(rule, frame, held=held))
    return pl.concat(held_parts, how="vertical"), pl.concat(clear_parts, how="vertical")


# ---- Advancing the state ------------------------------------------------------------------------------


def _with_severity(labels: str, severity: str) -> str:
    """The labels JSON with ``severity`` set (unchanged text if it already is)."""
    decoded = json.loads(labels)
    if decoded.get("severity") == severity:
        return labels
    decoded["severity"] = severity
    return json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _current_severity(alert: _Row, at: datetime, rule: Rule) -> Severity:
    """The worst level whose newest held window is ``at`` or has not aged out by ``at``."""
    for severity in _SEVERITIES_WORST_FIRST:
        last = alert[f"last_{severity}_at"]
        if last is not None and (last == at or at < last + _step(rule.scope) + rule.keep_firing_for):
            return severity
    raise AssertionError("a held window was just recorded")  # pragma: no cover


def _new_alert(window: _Row, previous: _Row | None) -> _Row:
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


def _hold(alert: _Row | None, window: _Row, rule: Rule) -> _Row:
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


def _transition(alert: _Row, status: str, event_at: datetime, as_of: datetime, playback_after: timedelta) -> _Row:
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
    before: _Row | None,
    windows: Sequence[tuple[datetime, bool, _Row]],
    rule: Rule,
    as_of: datetime,
    playback_after: timedelta,
) -> tuple[_Row | None, list[_Row]]:
    """One fingerprint: its alert after ``windows`` (event time, held, row) and its net transitions."""
    alert = before
    resolved: tuple[_Row, datetime] | None = None
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
    out: list[_Row] = []
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
    _require_aware("as_of", as_of)
    by_name = {rule.name: rule for rule in rules}
    state = _conform(state, STATE_SCHEMA, "state")
    held = _conform(held, RUN_SCHEMA, "held")
    clear = _conform(clear, CLEAR_SCHEMA, "clear")
    unknown = sorted((set(held["rule"]) | set(clear["rule"])) - by_name.keys())
    if unknown:
        raise ValueError(f"no rule given for {', '.join(unknown)}")
    keys = ["fingerprint", "event_at"]
    touched = pl.concat([held.select("fingerprint"), state.select("fingerprint")]).unique()
    clear = clear.join(held.select(keys), on=keys, how="anti").join(touched, on="fingerprint", how="semi")

    windows: dict[str, list[tuple[datetime, bool, _Row]]] = {}
    for row in held.iter_rows(named=True):
        windows.setdefault(row["fingerprint"], []).append((row["event_at"], True, row))
    for row in clear.iter_rows(named=True):
        windows.setdefault(row["fingerprint"], []).append((row["event_at"], False, row))
    states = {row["fingerprint"]: row for row in state.iter_rows(named=True)}

    transitions: list[_Row] = []
    for fp, timeline in windows.items():
        timeline.sort(key=lambda item: item[0])
        rule = by_name[timeline[0][2]["rule"]]
        alert, made = _replay(states.get(fp), timeline, rule, as_of, playback_after)
        transitions += made
        if alert is None:
            states.pop(fp, None)
        else:
            states[fp] = alert
    new_state = _frame(states.values(), STATE_SCHEMA).sort("rule", "fingerprint")
    ordered = _frame(transitions, TRANSITION_SCHEMA).sort("rule", "fingerprint", maintain_order=True)
    return Step(new_state, ordered)


# ---- Acks and shelves -----------------------------------------------------------------------------------


def acknowledge(state: pl.DataFrame, fingerprint: str, until: datetime | None) -> pl.DataFrame:
    """``state`` with alert ``fingerprint`` acknowledged until ``until`` (None: un-acknowledged).

    ``KeyError`` if no live alert has that fingerprint.
    """
    return _suppress(state, pl.col("fingerprint") == fingerprint, "acked_until", until, fingerprint)


def shelve(state: pl.DataFrame, target: str | Mapping[str, str], until: datetime | None) -> pl.DataFrame:
    """``state`` with alerts shelved until ``until`` (None: unshelved).

    ``target``: a fingerprint, or a label matcher (every pair equal to the alert's label, e.g.
    ``{"satellite": "sat-0001"}``). Only live alerts are shelved; ``KeyError`` if none matches.
    """
    if isinstance(target, str):
        return _suppress(state, pl.col("fingerprint") == target, "shelved_until", until, target)
    match = pl.lit(value=True)
    for name, value in target.items():
        match &= (pl.col("labels").str.json_path_match(f"$.{name}") == value).fill_null(value=False)
    return _suppress(state, match, "shelved_until", until, dict(target))


def _suppress(state: pl.DataFrame, match: pl.Expr, column: str, until: datetime | None, target: object) -> pl.DataFrame:
    if until is not None:
        _require_aware("until", until)
    state = _conform(state, STATE_SCHEMA, "state")
    if not state.select(match.any()).item():
        raise KeyError(f"no live alert matches {target!r}")
    value = pl.lit(until, UTC_US)
    return state.with_columns(pl.when(match).then(value).otherwise(pl.col(column)).alias(column))


def _active(row: _Row, as_of: datetime) -> bool:
    return any(row[name] is not None and as_of < row[name] for name in ("acked_until", "shelved_until"))


def suppressed(transitions: pl.DataFrame, state: pl.DataFrame, as_of: datetime) -> Delivery:
    """Applies acks and shelves at ``as_of`` to ``transitions`` (from ``advance``, with its ``state``).

    ``firing``/``updated`` transitions of an alert acked or shelved at ``as_of`` are held back;
    ``resolved`` ones are notified iff the alert's firing was (earlier, or in this call). Expired acks and
    shelves are cleared from the returned state; an alert still firing with none left is notified once as
    ``firing``. The returned state marks ``notified`` the alerts whose firing was notified: store it.
    """
    _require_aware("as_of", as_of)
    transitions = _conform(transitions, TRANSITION_SCHEMA, "transitions")
    rows = {row["fingerprint"]: row for row in _conform(state, STATE_SCHEMA, "state").iter_rows(named=True)}
    notify: list[_Row] = []
    held_back: list[_Row] = []
    sent: set[str] = set()  # fingerprints whose firing is notified now
    for row in transitions.iter_rows(named=True):
        fp = row["fingerprint"]
        if row["status"] == RESOLVED:
            send = row["notified"] or fp in sent
        else:
            send = not _active(row, as_of)
            if send:
                sent.add(fp)
                if fp in rows:
                    rows[fp]["notified"] = True
        (notify if send else held_back).append(row)
    for alert in rows.values():
        expired = [
            name for name in ("acked_until", "shelved_until") if alert[name] is not None and alert[name] <= as_of
        ]
        if not expired:
            continue
        for name in expired:
            alert[name] = None
        if alert["status"] == FIRING and not _active(alert, as_of) and alert["fingerprint"] not in sent:
            alert["notified"] = True
            again = {name: alert[name] for name in TRANSITION_SCHEMA if name in alert}
            notify.append(again | {"status": FIRING, "ends_at": None})
    return Delivery(
        _frame(notify, TRANSITION_SCHEMA), _frame(held_back, TRANSITION_SCHEMA), _frame(rows.values(), STATE_SCHEMA)
    )


# ---- Notifications -------------------------------------------------------------------------------------


def _item(row: _Row) -> AlertItem:
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
    rows = _conform(state, STATE_SCHEMA, "state").filter((pl.col("status") == FIRING) & pl.col("notified"))
    return [_item(row | {"ends_at": None}) for row in rows.iter_rows(named=True)]


def group_notifications(transitions: pl.DataFrame, receiver_for: Callable[[dict[str, str]], str]) -> list[Notification]:
    """One ``Notification`` per receiver, group and status (``updated`` alerts are ``firing``).

    ``receiver_for(labels)`` names an alert's receiver; it also sees ``playback`` ("true"/"false"), so
    alerts raised from played-back data can be routed to another hook. ``group_key`` is ``"<receiver>:<group JSON>"``,
    the same for a group's firing and resolved notifications. Firing notifications come first, then
    resolved ones (each by receiver and group), so an alert that fired and resolved within one evaluation
    ends resolved at the receiver; an alert appears once per notification (its last transition).
    """
    transitions = _conform(transitions, TRANSITION_SCHEMA, "transitions")
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


# ---- Storage ---------------------------------------------------------------------------------------------


def state_rows(state: pl.DataFrame) -> list[tuple[Any, ...]]:
    """The state's rows as tuples in the table's column order, for ``executemany`` of an INSERT."""
    return _conform(state, STATE_SCHEMA, "state").rows()


def state_from_rows(rows: Iterable[Sequence[Any]]) -> pl.DataFrame:
    """The state (``STATE_SCHEMA``) from rows in the table's column order, e.g. ``STATE_SELECT``'s.

    Aware datetimes in any time zone (DuckDB gives TIMESTAMPTZ in the session's) are converted to UTC.
    """
    frame = pl.DataFrame([tuple(row) for row in rows], schema=STATE_SCHEMA, orient="row")
    return frame.sort("rule", "fingerprint")
