"""Operators' alert commands (``orbitwatch alerts``, the web view, the query service): the model and
how one is applied to the alert state.

An ``AlertCommand`` acks/unacks a fingerprint or shelves/unshelves one or a label matcher. Without a
daemon, the CLI applies it directly (``apply_direct``); while a daemon holds the file it is spooled
(``alerting.spool``). Ack and shelve times are wall-clock instants; the lifecycle compares them with the
ground's clock (``as_of``), which is close to the wall clock on a live stream and behind it during a
backlog (an ack then lasts longer in data time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import duckdb
import polars as pl

from alerting.audit import AuditEntry, record
from alerting.errors import CommandError
from alerting.suppression import acknowledge, shelve
from alerting.tables import read_state, write_state

Action = Literal["ack", "unack", "shelve", "unshelve"]
ACTIONS: tuple[Action, ...] = get_args(Action)
VIAS = ("cli", "web", "api")
COMMAND_FIELDS = ("action", "fingerprint", "match", "until", "requested_at", "requested_by", "via")
"""An ``AlertCommand``'s fields, as in its spool file."""


def _time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CommandError(f"{name} must be an ISO 8601 time or null, not {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{name}: {value!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise CommandError(f"{name}: {value!r} has no time zone")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class AlertCommand:
    """One operator's command: ``ack``/``unack`` a fingerprint, ``shelve``/``unshelve`` one or a matcher.

    ``fingerprint`` may be a unique prefix of a live alert's; ``until`` is set for ack and shelve only.
    """

    action: Action
    fingerprint: str | None = None
    match: dict[str, str] = field(default_factory=dict)
    until: datetime | None = None
    requested_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    requested_by: str = ""
    via: str = "cli"
    """Which path it came by: ``cli`` (``orbitwatch alerts``), ``web`` (the web view's buttons) or ``api``
    (``POST /v1/alerts/commands`` from another client)."""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise CommandError(f"unknown action {self.action!r} (one of {', '.join(ACTIONS)})")
        if self.action in ("ack", "unack") and (self.fingerprint is None or self.match):
            raise CommandError(f"{self.action} needs a fingerprint (and no label matcher)")
        if self.action in ("shelve", "unshelve") and (self.fingerprint is None) == (not self.match):
            raise CommandError(f"{self.action} needs a fingerprint or a label matcher, not both")
        if self.fingerprint is not None and not self.fingerprint:
            raise CommandError("empty fingerprint")
        if (self.until is None) == (self.action in ("ack", "shelve")):
            raise CommandError(f"{self.action} {'needs' if self.action in ('ack', 'shelve') else 'takes no'} 'until'")
        if self.until is not None and self.until.tzinfo is None:
            raise CommandError("until must be timezone-aware")
        if self.via not in VIAS:
            raise CommandError(f"unknown via {self.via!r} (one of {', '.join(VIAS)})")

    def describe(self) -> str:
        """E.g. ``shelve {"satellite": "sat-0001"} until 2026-03-01T14:00:00+00:00``."""
        target = self.fingerprint if self.fingerprint is not None else json.dumps(self.match, sort_keys=True)
        until = f" until {self.until.isoformat()}" if self.until is not None else ""
        return f"{self.action} {target}{until}"

    def to_json(self) -> dict[str, Any]:
        """The spool file's content."""
        return {
            "action": self.action,
            "fingerprint": self.fingerprint,
            "match": self.match,
            "until": self.until.isoformat() if self.until is not None else None,
            "requested_at": self.requested_at.isoformat(),
            "requested_by": self.requested_by,
            "via": self.via,
        }

    @classmethod
    def from_json(cls, data: object) -> AlertCommand:
        """A command from a spool file's JSON; ``CommandError`` naming what is wrong."""
        if not isinstance(data, dict):
            raise CommandError("not a JSON object")
        unknown = sorted(set(data) - {*COMMAND_FIELDS})
        if unknown:
            raise CommandError(f"unknown field(s) {', '.join(unknown)}")
        action, fp, match = data.get("action"), data.get("fingerprint"), data.get("match") or {}
        if not isinstance(action, str):
            raise CommandError("action must be a string")
        if fp is not None and not isinstance(fp, str):
            raise CommandError("fingerprint must be a string")
        if not isinstance(match, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in match.items()):
            raise CommandError("match must be an object of label names to string values")
        requested_at = _time(data.get("requested_at"), "requested_at") or datetime.now(UTC)
        by, via = data.get("requested_by") or "", data.get("via") or "cli"
        if not isinstance(by, str) or not isinstance(via, str):
            raise CommandError("requested_by and via must be strings")
        until = _time(data.get("until"), "until")
        return cls(action, fp, dict(match), until, requested_at, by, via)  # type: ignore[arg-type]


def resolve_fingerprint(state: pl.DataFrame, text: str) -> str:
    """The live alert's fingerprint ``text`` is (or uniquely begins); ``CommandError`` otherwise."""
    fingerprints = state["fingerprint"].to_list()
    if text in fingerprints:
        return text
    found = [fp for fp in fingerprints if fp.startswith(text.lower())]
    if len(found) == 1:
        return str(found[0])
    if not found:
        raise CommandError(f"no live alert has fingerprint {text!r}")
    raise CommandError(f"fingerprint {text!r} is ambiguous: {', '.join(sorted(found))}")


def matching(state: pl.DataFrame, labels: Mapping[str, str]) -> list[str]:
    """Fingerprints of the live alerts whose labels include every pair of ``labels``."""
    return [
        str(row["fingerprint"])
        for row in state.iter_rows(named=True)
        if all(json.loads(row["labels"]).get(name) == value for name, value in labels.items())
    ]


def apply_command(state: pl.DataFrame, command: AlertCommand) -> tuple[pl.DataFrame, list[str]]:
    """``state`` after ``command``, and the fingerprints it applied to; ``CommandError`` if it matches none."""
    if command.fingerprint is not None:
        targets = [resolve_fingerprint(state, command.fingerprint)]
    else:
        targets = matching(state, command.match)
        if not targets:
            raise CommandError(f"no live alert matches {json.dumps(command.match, sort_keys=True)}")
    try:
        if command.action in ("ack", "unack"):
            return acknowledge(state, targets[0], command.until), targets
        return shelve(state, targets[0] if command.fingerprint is not None else command.match, command.until), targets
    except KeyError as exc:  # pragma: no cover - resolved above
        raise CommandError(str(exc)) from exc


def apply_direct(con: duckdb.DuckDBPyConnection, command: AlertCommand) -> list[str]:
    """Apply ``command`` to ``alert_state`` in a transaction (no daemon holds the file), with its audit row.
    Returns the fingerprints; a command that matches nothing is audited as rejected and raises ``CommandError``."""
    con.execute("BEGIN TRANSACTION")
    try:
        try:
            state, targets = apply_command(read_state(con), command)
        except CommandError as exc:
            record(con, [AuditEntry(command, reason=str(exc))])
            con.execute("COMMIT")
            raise
        write_state(con, state)
        record(con, [AuditEntry(command, tuple(targets))])
        con.execute("COMMIT")
    except CommandError:
        raise
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return targets
