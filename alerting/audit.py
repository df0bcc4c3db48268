"""The audit of operators' alert commands: who asked for what, when, and what came of it.

One row per command an ack/shelve/unack/unshelve path handled: applied (with the fingerprints it changed)
or rejected (with the reason). The daemon writes the rows of spooled commands (``orbitwatch alerts`` while a
daemon runs, and the web view's buttons) in the transaction that stores their effect; ``orbitwatch alerts``
without a daemon writes its row with the change it applies directly. Read it with
``orbitwatch query "SELECT * FROM alert_audit ORDER BY applied_at DESC"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb

from storage.tables import ALERT_AUDIT

if TYPE_CHECKING:
    from alerting.commands import AlertCommand

_COLUMNS = ", ".join(f'"{name}"' for name in ALERT_AUDIT.names)
_INSERT = f"INSERT INTO {ALERT_AUDIT.name} ({_COLUMNS}) VALUES ({', '.join('?' for _ in ALERT_AUDIT.names)})"
"""One audit row, by the columns ``storage.tables.ALERT_AUDIT`` declares (``AuditEntry.row`` gives them in order)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What became of one command: applied to ``fingerprints``, or rejected for ``reason``."""

    command: AlertCommand
    fingerprints: tuple[str, ...] = ()
    reason: str | None = None

    def row(self, applied_at: datetime) -> tuple[object, ...]:
        """The ``alert_audit`` row, in the declared column order (``storage.tables.ALERT_AUDIT``)."""
        c = self.command
        target = c.fingerprint if c.fingerprint is not None else json.dumps(c.match, sort_keys=True)
        outcome = "rejected" if self.reason is not None else "applied"
        return (
            c.requested_at,
            c.requested_by,
            c.via,
            c.action,
            target,
            c.until,
            outcome,
            list(self.fingerprints),
            self.reason,
            applied_at,
        )


def record(con: duckdb.DuckDBPyConnection, entries: list[AuditEntry]) -> None:
    """Append ``entries`` to ``alert_audit`` (inside the caller's transaction)."""
    if entries:
        now = datetime.now(UTC)
        con.executemany(_INSERT, [e.row(now) for e in entries])
