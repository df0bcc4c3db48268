"""Acks and shelves: which of the lifecycle's transitions are notified, and which are held back.

The alert keeps its state and lifecycle; while ``as_of < acked_until`` or ``as_of < shelved_until`` its
``firing``/``updated`` transitions are held back. ``resolved`` is notified exactly when the alert's firing
was (``notified``, or now), shelved or not, so no receiver keeps an incident open forever; an alert that
fired and resolved unseen stays silent. At expiry the field is cleared, and an alert still firing with no
suppression left is notified once more as ``firing`` (current severity, its original event and learned
times), e.g. "still firing after the shelve". Pure functions, no I/O and no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from alerting.evaluate import UTC_US
from alerting.payload import FIRING, RESOLVED
from alerting.state import STATE_SCHEMA, TRANSITION_SCHEMA, Row, conform, require_aware, rows_frame


@dataclass(frozen=True)
class Delivery:
    """The result of ``suppressed``: what to notify, what is held back, and the state to store."""

    notify: pl.DataFrame
    held_back: pl.DataFrame
    state: pl.DataFrame


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
        require_aware("until", until)
    state = conform(state, STATE_SCHEMA, "state")
    if not state.select(match.any()).item():
        raise KeyError(f"no live alert matches {target!r}")
    value = pl.lit(until, UTC_US)
    return state.with_columns(pl.when(match).then(value).otherwise(pl.col(column)).alias(column))


def _active(row: Row, as_of: datetime) -> bool:
    return any(row[name] is not None and as_of < row[name] for name in ("acked_until", "shelved_until"))


def suppressed(transitions: pl.DataFrame, state: pl.DataFrame, as_of: datetime) -> Delivery:
    """Applies acks and shelves at ``as_of`` to ``transitions`` (from ``advance``, with its ``state``).

    ``firing``/``updated`` transitions of an alert acked or shelved at ``as_of`` are held back;
    ``resolved`` ones are notified iff the alert's firing was (earlier, or in this call). Expired acks and
    shelves are cleared from the returned state; an alert still firing with none left is notified once as
    ``firing``. The returned state marks ``notified`` the alerts whose firing was notified: store it.
    """
    require_aware("as_of", as_of)
    transitions = conform(transitions, TRANSITION_SCHEMA, "transitions")
    rows = {row["fingerprint"]: row for row in conform(state, STATE_SCHEMA, "state").iter_rows(named=True)}
    notify: list[Row] = []
    held_back: list[Row] = []
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
        rows_frame(notify, TRANSITION_SCHEMA),
        rows_frame(held_back, TRANSITION_SCHEMA),
        rows_frame(rows.values(), STATE_SCHEMA),
    )
