"""Alert state and the outbox, kept in the batch's own transaction (opt-in: ``alerting.rules_file``).

After the derived tables of a batch are written, ``AlertTables.step`` evaluates the rules on the windows
just recomputed (scopes ``gpu`` and ``rack``) and on the ground's "now" judgement (scope ``rack_now``),
advances the alert lifecycle (``alerting.lifecycle``), applies acks and shelves, groups the transitions
into notifications and enqueues them in ``alert_outbox`` (``alerting.outbox``), all in the transaction
that stores the data: a crash never loses a notification, and a notification is never sent for data
that was rolled back. The delivery worker (``alerting.delivery``) sends them on its own thread and cursor,
so a slow or dead hook never blocks ingestion.

Routing: a notification goes to the first route whose ``match`` its labels (and ``playback``) satisfy;
when none does, to the only hook if there is exactly one, else nowhere. The lifecycle state is cached in
memory (this process is the file's only writer) and written through; a rolled-back transaction discards
its changes.

Operators' commands change the state between writes (``replace_state``): ``alerting.commands`` (the model,
``apply_direct`` without a daemon), ``alerting.spool`` (the daemon's queue of them) and
``alerting.snapshot`` (the live alerts the daemon publishes for them).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from alerting.audit import AuditEntry, record
from alerting.grouping import firing_items, group_notifications
from alerting.lifecycle import advance
from alerting.observe import observe
from alerting.outbox import enqueue
from alerting.payload import AlertItem
from alerting.rules.ruleset import RuleSet
from alerting.rules.vocabulary import ROUTING_LABEL, Scope
from alerting.snapshot import write_snapshot
from alerting.state import STATE_SCHEMA, STATE_SELECT, state_from_rows
from alerting.suppression import suppressed
from storage.database import database_path, disk_full_detail, insert_rows
from storage.errors import StorageError


class AlertTables:
    """The alert lifecycle and outbox on the writer's connection, inside its open transaction."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, rules: RuleSet, external_url: str, snapshot: Path | None = None
    ) -> None:
        self._con = con
        self.rules = rules
        self.external_url = external_url
        self.snapshot = snapshot
        self._state = read_state(con)
        self._pending: pl.DataFrame | None = None
        self.last_enqueued = 0
        if snapshot is not None:
            write_snapshot(snapshot, self._state)

    @property
    def state(self) -> pl.DataFrame:
        """The committed alert state (``STATE_SCHEMA``)."""
        return self._state

    def committed(self) -> None:
        """The writer committed: the state changed in its transaction becomes the state (and the snapshot)."""
        if self._pending is not None:
            changed = not self._pending.equals(self._state)
            self._state, self._pending = self._pending, None
            if changed and self.snapshot is not None:
                write_snapshot(self.snapshot, self._state)

    def replace_state(self, state: pl.DataFrame, audit: list[AuditEntry] | None = None) -> None:
        """Store ``state`` (operators' acks and shelves) and their ``audit`` rows in a transaction of its own;
        call between writes.

        ``StorageError`` after rolling back on failure (the cached state is then unchanged).
        """
        if self._pending is not None:
            raise StorageError("alert state is being changed by a write in flight")
        try:
            self._con.execute("BEGIN TRANSACTION")
            write_state(self._con, state)
            record(self._con, audit or [])
            self._con.execute("COMMIT")
        except duckdb.Error as exc:
            with contextlib.suppress(duckdb.Error):
                self._con.execute("ROLLBACK")
            path = database_path(self._con)
            where = f" in {path}" if path is not None else ""
            raise StorageError(
                f"storing the alert commands{where} failed and was rolled back: {exc}{disk_full_detail(path, exc)}"
            ) from exc
        self._pending = state
        self.committed()

    def rolled_back(self) -> None:
        """The writer rolled back: forget the state changed in its transaction."""
        self._pending = None

    def firing_for(self, hook: str) -> list[AlertItem]:
        """The committed alerts that fire, were notified and route to ``hook`` (for re-sending them).

        Safe from another thread: it reads the committed state, which a commit replaces whole.
        """
        items = firing_items(self._state)
        return [i for i in items if self.receiver_for({**i.labels, ROUTING_LABEL: str(i.playback).lower()}) == hook]

    def receiver_for(self, labels: dict[str, str]) -> str:
        """The hook of the first route ``labels`` match, else the only hook (or ``"none"``)."""
        hooks = self.rules.hooks_for(labels)
        if hooks:
            return hooks[0].name
        return self.rules.hooks[0].name if len(self.rules.hooks) == 1 else "none"

    def rate_lookback(self, scope: Scope) -> timedelta | None:
        """The longest lookback of the rate rules on ``scope`` (their context windows), None without any."""
        lookbacks = [r.lookback for r in self.rules.rules if r.scope == scope and r.kind == "rate"]
        return max(lookbacks) if lookbacks else None

    def step(
        self,
        frames: dict[Scope, pl.DataFrame],
        as_of: datetime,
        now: datetime,
        context: dict[Scope, pl.DataFrame] | None = None,
    ) -> int:
        """Evaluate the rules on ``frames`` (earlier windows in ``context``, for rate rules) as of the
        ground's clock; enqueue notifications. Returns how many."""
        frames = {scope: frame for scope, frame in frames.items() if not frame.is_empty()}
        if not frames:
            return 0
        state = self._pending if self._pending is not None else self._state
        held, clear = observe(self.rules.rules, frames, context)
        stepped = advance(state, held, clear, as_of, self.rules.rules)
        delivery = suppressed(stepped.transitions, stepped.state, as_of)
        notifications = group_notifications(delivery.notify, self.receiver_for)
        routed = [(n.receiver, n) for n in notifications if n.receiver != "none"]
        count = enqueue(self._con, routed, now, self.external_url) if routed else 0
        self._write_state(delivery.state)
        self.last_enqueued = count
        return count

    def _write_state(self, state: pl.DataFrame) -> None:
        write_state(self._con, state)
        self._pending = state


def read_state(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The ``alert_state`` table as ``STATE_SCHEMA``."""
    return state_from_rows(con.execute(STATE_SELECT).fetchall())


def write_state(con: duckdb.DuckDBPyConnection, state: pl.DataFrame) -> None:
    """Replace the rows of ``alert_state`` with ``state``, in the caller's transaction."""
    con.execute("DELETE FROM alert_state")
    insert_rows(con, "alert_state", list(STATE_SCHEMA), state)
