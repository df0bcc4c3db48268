"""Alert state and the outbox, kept in the batch's own transaction (opt-in: ``alerting.rules_file``).

After the derived tables of a batch are written, ``AlertTables.step`` evaluates the rules on the windows
just recomputed (scopes ``gpu`` and ``rack``) and on the ground's "now" judgement (scope ``rack_now``),
advances the alert lifecycle (``alerting.lifecycle``), applies acks and shelves, groups the transitions
into notifications and enqueues them in ``alert_outbox`` (``alerting.outbox``), all in the transaction
that stores the data: a crash never loses a notification, and a notification is never sent for data
that was rolled back. The delivery worker (``alerting.delivery``) sends them on its own thread and cursor,
so a slow or dead hook never blocks ingestion.

Routing: a notification goes to the first route whose ``match`` its labels satisfy (to ``default_hook``
when none does, or nowhere if there is none). The lifecycle state is cached in memory (this process is
the file's only writer) and written through; a rolled-back transaction discards its changes.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from alerting.lifecycle import (
    STATE_SCHEMA,
    STATE_SELECT,
    advance,
    group_notifications,
    observe,
    state_from_rows,
    suppressed,
)
from alerting.outbox import enqueue
from alerting.rules import RuleSet, Scope


class AlertTables:
    """The alert lifecycle and outbox on the writer's connection, inside its open transaction."""

    def __init__(self, con: duckdb.DuckDBPyConnection, rules: RuleSet, external_url: str) -> None:
        self._con = con
        self.rules = rules
        self.external_url = external_url
        self._state = state_from_rows(con.execute(STATE_SELECT).fetchall())
        self._pending: pl.DataFrame | None = None
        self.last_enqueued = 0

    def committed(self) -> None:
        """The writer committed: the state changed in its transaction becomes the state."""
        if self._pending is not None:
            self._state, self._pending = self._pending, None

    def rolled_back(self) -> None:
        """The writer rolled back: forget the state changed in its transaction."""
        self._pending = None

    def receiver_for(self, labels: dict[str, str]) -> str:
        """The hook of the first route ``labels`` match, else the only hook (or ``"none"``)."""
        hooks = self.rules.hooks_for(labels)
        if hooks:
            return hooks[0].name
        return self.rules.hooks[0].name if len(self.rules.hooks) == 1 else "none"

    def step(self, frames: dict[Scope, pl.DataFrame], as_of: datetime, now: datetime) -> int:
        """Evaluate the rules on ``frames`` as of the ground's clock; enqueue notifications. Returns how many."""
        frames = {scope: frame for scope, frame in frames.items() if not frame.is_empty()}
        if not frames:
            return 0
        state = self._pending if self._pending is not None else self._state
        held, clear = observe(self.rules.rules, frames)
        stepped = advance(state, held, clear, as_of, self.rules.rules)
        delivery = suppressed(stepped.transitions, stepped.state, as_of)
        notifications = group_notifications(delivery.notify, self.receiver_for)
        routed = [(n.receiver, n) for n in notifications if n.receiver != "none"]
        count = enqueue(self._con, routed, now, self.external_url) if routed else 0
        self._write_state(delivery.state)
        self.last_enqueued = count
        return count

    def _write_state(self, state: pl.DataFrame) -> None:
        self._con.execute("DELETE FROM alert_state")
        if not state.is_empty():
            self._con.register("alert_rows", state.select(list(STATE_SCHEMA)))
            try:
                names = ", ".join(f'"{c}"' for c in STATE_SCHEMA)
                self._con.execute(f"INSERT INTO alert_state ({names}) SELECT {names} FROM alert_rows")
            finally:
                self._con.unregister("alert_rows")
        self._pending = state
