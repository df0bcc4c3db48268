"""The alert outbox: notifications stored in DuckDB in the same transaction as the data that raised them.

The daemon's writer calls ``enqueue(con, ...)`` on its open transaction, so a notification exists exactly
when the batch that produced it is committed: a rolled-back batch leaves none, a crash after the commit
loses none (the row is in the WAL). ``alerting.delivery.DeliveryWorker`` then delivers the rows on a
cursor of its own (``con.cursor()``), outside the writer's transactions, so a dead hook never holds up
ingestion.

One row per (hook, notification); ``state`` goes ``pending`` -> ``delivered`` | ``failed``:

- ``attempts`` counts delivery attempts made; ``next_attempt_at`` is when a pending row may be tried
  (NULL once delivered or failed); ``last_error`` is the latest failure (kept after a later success);
- ``failed`` is final: the retry budget was spent (the error says how many attempts) or the row could
  not be delivered at all (no hook of that name, a body that is not an Alertmanager body).

DuckDB concurrency, as measured on DuckDB 2.0.1 (``tests/test_alert_delivery.py``): the writer's
transaction appending outbox rows and the worker's single-statement updates of other, committed rows
never conflict. Two transactions updating the same column of the same row do ("TransactionContext Error:
Conflict on update!"; different columns of one row do not), which is why only the worker ever updates
outbox rows and the writer only appends. A DELETE and an UPDATE of one row by two transactions raised no
conflict in a probe, so rows are only deleted once final (``purge_delivered``), by the worker. Sequence
values are not given back by a rollback (ids may have gaps). The worker sees only committed rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from alerting.payload import (
    EVENT_TIME,
    GROUND_LEARNED_TIME,
    PLAYBACK,
    STATUSES,
    ZERO_TIME,
    AlertItem,
    Notification,
    alertmanager_body,
    encode,
)
from storage.tables import ALERT_OUTBOX

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
STATES = (PENDING, DELIVERED, FAILED)

_MAX_ERROR = 2000
_FEW = 3
"""Up to this many rows are inserted one statement each; more go in as one Arrow scan."""
_ROW_COLUMNS = "id, hook, group_key, status, body, attempts, next_attempt_at"
_INSERTED = ("id", "hook", "group_key", "status", "fingerprints", "body")
"""The ``alert_outbox`` columns a batch of notifications brings (the rest are set in SQL)."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A pending notification to one hook, as the worker needs it."""

    id: int
    hook: str
    group_key: str
    status: str
    body: bytes
    attempts: int
    next_attempt_at: datetime


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")


def enqueue(
    con: duckdb.DuckDBPyConnection,
    notifications: Sequence[tuple[str, Notification]],
    now: datetime,
    external_url: str,
    *,
    max_alerts: int = 0,
) -> int:
    """Insert one pending row per ``(hook name, notification)`` on ``con``; returns the rows inserted.

    Call it inside the caller's open transaction (the batch that raised the notifications): the rows
    commit or roll back with it. Ids follow the order of ``notifications``, which is the order the worker
    delivers a group in (a ``resolved`` listed after its ``firing`` is never delivered before it); enqueue
    the notifications of one group from one connection (the writer's) only, since ids are taken when
    enqueued, not when committed. More than a few rows go in with one Arrow scan.
    """
    if not notifications:
        return 0
    _require_aware("now", now)
    count = len(notifications)
    hooks = [hook for hook, _ in notifications]
    keys = [n.group_key for _, n in notifications]
    statuses = [n.status for _, n in notifications]
    fingerprints = [[a.fingerprint for a in n.alerts] for _, n in notifications]
    bodies = [encode(alertmanager_body(n, external_url, max_alerts)) for _, n in notifications]
    if count <= _FEW:
        # The usual batch raises none or one: a plain INSERT costs a third of registering a frame (measured).
        for values in zip(hooks, keys, statuses, fingerprints, bodies, strict=True):
            con.execute(
                """INSERT INTO alert_outbox (hook, group_key, status, fingerprints, body, created_at, state,
                        attempts, next_attempt_at)
                   VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?)""",
                [*values, now, now],
            )
        return count
    # Ids are taken first and assigned in list order: nextval() inside a parallel INSERT ... SELECT
    # does not promise to follow the input order.
    ids = sorted(int(r[0]) for r in con.execute("SELECT nextval('alert_outbox_id') FROM range(?)", [count]).fetchall())
    rows = pl.DataFrame(
        {"id": ids, "hook": hooks, "group_key": keys, "status": statuses, "fingerprints": fingerprints, "body": bodies},
        schema={name: ALERT_OUTBOX.polars_schema[name] for name in _INSERTED},
    )
    con.register("alert_outbox_rows", rows)
    try:
        con.execute(
            """INSERT INTO alert_outbox (id, hook, group_key, status, fingerprints, body, created_at, state,
                    attempts, next_attempt_at)
               SELECT id, hook, group_key, status, fingerprints, body, $now, 'pending', 0, $now
               FROM alert_outbox_rows""",
            {"now": now},
        )
    finally:
        con.unregister("alert_outbox_rows")
    return count


def due(cursor: duckdb.DuckDBPyConnection, now: datetime, limit: int = 100) -> list[OutboxRow]:
    """Pending rows of the (hook, group) queues whose oldest pending row may be tried at ``now``, by id.

    A queue whose oldest pending row waits for a retry contributes nothing, so nothing of that group
    overtakes it, while other groups (and the same group on other hooks) go on. The rows behind a due head
    are returned too (in id order), so a backlog drains in one pass; the caller delivers each queue in
    order and stops it at its first failure.
    """
    _require_aware("now", now)
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    rows = cursor.execute(
        f"""WITH pending AS (
                SELECT {_ROW_COLUMNS} FROM alert_outbox WHERE state = 'pending'
            ), heads AS (
                SELECT hook, group_key, arg_min(next_attempt_at, id) AS head_due FROM pending GROUP BY hook, group_key
            )
            SELECT {", ".join(f"p.{c.strip()}" for c in _ROW_COLUMNS.split(","))}
            FROM pending p JOIN heads h ON p.hook = h.hook AND p.group_key = h.group_key
            WHERE h.head_due <= $now
            ORDER BY p.id
            LIMIT $limit""",
        {"now": now, "limit": limit},
    ).fetchall()
    return [OutboxRow(int(r[0]), r[1], r[2], r[3], bytes(r[4]), int(r[5]), r[6]) for r in rows]


def _clip(error: str) -> str:
    return error if len(error) <= _MAX_ERROR else error[: _MAX_ERROR - 3] + "..."


def _count(cursor: duckdb.DuckDBPyConnection) -> int:
    """The rows the last UPDATE or DELETE on ``cursor`` changed (DuckDB returns the count)."""
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def mark_delivered(cursor: duckdb.DuckDBPyConnection, row_id: int, now: datetime) -> bool:
    """Record a successful attempt; False if the row was not pending (already delivered or failed)."""
    cursor.execute(
        """UPDATE alert_outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = $now,
               next_attempt_at = NULL
           WHERE id = $id AND state = 'pending'""",
        {"id": row_id, "now": now},
    )
    return _count(cursor) > 0


def mark_retry(cursor: duckdb.DuckDBPyConnection, row_id: int, error: str, next_attempt_at: datetime) -> bool:
    """Record a failed attempt and when to try again; False if the row was not pending."""
    _require_aware("next_attempt_at", next_attempt_at)
    cursor.execute(
        """UPDATE alert_outbox SET attempts = attempts + 1, last_error = $error, next_attempt_at = $next
           WHERE id = $id AND state = 'pending'""",
        {"id": row_id, "error": _clip(error), "next": next_attempt_at},
    )
    return _count(cursor) > 0


def mark_failed(cursor: duckdb.DuckDBPyConnection, row_id: int, error: str, *, attempted: bool = True) -> bool:
    """Give the row up with ``error`` (``attempted``: this follows a failed attempt, which is counted).

    False if the row was not pending.
    """
    cursor.execute(
        """UPDATE alert_outbox SET state = 'failed', attempts = attempts + $inc, last_error = $error,
               next_attempt_at = NULL
           WHERE id = $id AND state = 'pending'""",
        {"id": row_id, "error": _clip(error), "inc": 1 if attempted else 0},
    )
    return _count(cursor) > 0


def summary(cursor: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows per state (every state present, 0 if none): for metrics and ``status`` output."""
    counts = dict.fromkeys(STATES, 0)
    for state, count in cursor.execute("SELECT state, count(*) FROM alert_outbox GROUP BY state").fetchall():
        counts[str(state)] = int(count)
    return counts


def purge_delivered(cursor: duckdb.DuckDBPyConnection, delivered_before: datetime) -> int:
    """Delete rows delivered before ``delivered_before`` (failed rows stay, for an operator); returns how many."""
    _require_aware("delivered_before", delivered_before)
    cursor.execute(
        "DELETE FROM alert_outbox WHERE state = 'delivered' AND delivered_at < ?",
        [delivered_before],
    )
    return _count(cursor)


def _time(text: object, what: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a string")
    value = datetime.fromisoformat(text)
    _require_aware(what, value)
    return value


def _strings(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{what} is not an object of strings")
    return dict(value)


def notification_from_body(body: bytes) -> Notification:
    """The notification an Alertmanager body (``payload.alertmanager_body``) was made from.

    Hooks are given it next to the body (for the group key, status and receiver). Alerts cut by
    ``max_alerts`` are not in the body, so not in the result; the ``event_time``, ``ground_learned_time``
    and ``playback`` annotations become the item's fields again. ValueError if ``body`` is not such a body.
    """
    try:
        decoded = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise ValueError("the body is not a JSON object")
    try:
        alerts = []
        for alert in decoded["alerts"]:
            annotations = _strings(alert["annotations"], "annotations")
            event_at = _time(annotations.pop(EVENT_TIME), EVENT_TIME)
            learned_at = _time(annotations.pop(GROUND_LEARNED_TIME), GROUND_LEARNED_TIME)
            playback = annotations.pop(PLAYBACK) == "true"
            ends_at = None if alert["endsAt"] == ZERO_TIME else _time(alert["endsAt"], "endsAt")
            alerts.append(
                AlertItem(
                    fingerprint=str(alert["fingerprint"]),
                    status=str(alert["status"]),
                    labels=_strings(alert["labels"], "labels"),
                    annotations=annotations,
                    starts_at=_time(alert["startsAt"], "startsAt"),
                    ends_at=ends_at,
                    event_at=event_at,
                    learned_at=learned_at,
                    playback=playback,
                    generator_url=str(alert.get("generatorURL", "")),
                )
            )
        status = decoded["status"]
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {STATUSES}")
        return Notification(
            group_key=str(decoded["groupKey"]),
            status=status,
            receiver=str(decoded["receiver"]),
            group_labels=_strings(decoded["groupLabels"], "groupLabels"),
            alerts=alerts,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the body is not an Alertmanager body: {type(exc).__name__}: {exc}") from exc
