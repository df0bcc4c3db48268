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

**Operators' commands** (``orbitwatch alerts``). DuckDB lets one process open the file, so while a daemon
runs the CLI can neither read ``alert_state`` nor change it. Instead:

- the daemon writes a JSON **snapshot** of its live alerts next to the database (``snapshot_path``:
  ``<db>.alerts.json``, atomically: temp file then rename) at start-up and whenever it commits a
  transaction that changed the alert state; the CLI lists from it, showing its age;
- the CLI **spools** each ack/shelve/unack/unshelve as a JSON file (``AlertCommand``) into
  ``spool_dir`` (``<db>.alerts.d/``), and the daemon applies them (``apply_spool``) on the writer's
  connection, in a transaction of their own, only while no batch write is in flight; applied files are
  deleted, a rejected one is moved to ``rejected/`` with a ``.reason`` file beside it.

Without a daemon, the CLI applies a command directly (``apply_direct``). Ack and shelve times are wall-clock
instants; the lifecycle compares them with the ground's clock (``as_of``), which is close to the wall clock
on a live stream and behind it during a backlog (an ack then lasts longer in data time).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import duckdb
import polars as pl

from alerting.audit import AuditEntry, record
from alerting.errors import CommandError
from alerting.lifecycle import (
    STATE_SCHEMA,
    STATE_SELECT,
    acknowledge,
    advance,
    firing_items,
    group_notifications,
    observe,
    shelve,
    state_from_rows,
    suppressed,
)
from alerting.outbox import enqueue
from alerting.payload import AlertItem
from alerting.rules import ROUTING_LABEL, RuleSet, Scope
from storage.database import database_path, disk_full_detail, insert_rows
from storage.errors import StorageError

Action = Literal["ack", "unack", "shelve", "unshelve"]
ACTIONS: tuple[Action, ...] = get_args(Action)
VIAS = ("cli", "web", "api")
COMMAND_FIELDS = ("action", "fingerprint", "match", "until", "requested_at", "requested_by", "via")
"""An ``AlertCommand``'s fields, as in its spool file."""
SNAPSHOT_VERSION = 1


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


# ---- Operators' commands: snapshot, spool, application ---------------------------------------------------


def snapshot_path(database: Path) -> Path:
    """Where the daemon writes the snapshot of its live alerts: ``<database>.alerts.json``."""
    return database.with_name(database.name + ".alerts.json")


def spool_dir(database: Path) -> Path:
    """Where the CLI spools commands for the daemon holding ``database``: ``<database>.alerts.d``."""
    return database.with_name(database.name + ".alerts.d")


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


def spool_command(directory: Path, command: AlertCommand) -> Path:
    """Write ``command`` as a new JSON file in ``directory`` (atomically: the daemon reads ``*.json`` only)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = command.requested_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{stamp}-{uuid.uuid4().hex[:8]}.json"
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(command.to_json(), indent=1) + "\n")
    os.replace(temp, path)
    return path


@dataclass(frozen=True, slots=True)
class SpoolResult:
    """What ``apply_spool`` did: per file, the command and the fingerprints, or the reason it was rejected."""

    applied: list[tuple[str, AlertCommand, list[str]]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def _reject(path: Path, reason: str) -> None:
    rejected = path.parent / "rejected"
    rejected.mkdir(exist_ok=True)
    (rejected / (path.name + ".reason")).write_text(reason + "\n")
    os.replace(path, rejected / path.name)


def apply_spool(directory: Path, alerts: AlertTables | None) -> SpoolResult:
    """Apply the commands spooled in ``directory`` (oldest first), in one transaction on ``alerts``' connection.

    Call only while no batch write is in flight. The transaction stores the new state and an
    ``alert_audit`` row per command (applied or rejected); after the commit, applied files are deleted and a
    command that is malformed or matches no live alert is moved to ``rejected/`` with its reason (all of
    them, unaudited, when ``alerts`` is None: alerting is off). A failed transaction raises ``StorageError``
    and leaves every file in place, to be retried.
    """
    if not directory.is_dir():
        return SpoolResult()
    files = sorted(directory.glob("*.json"))
    if not files:
        return SpoolResult()
    result = SpoolResult()
    state = alerts.state if alerts is not None else None
    audit: list[AuditEntry] = []
    done: list[Path] = []
    refused: list[tuple[Path, str]] = []
    for path in files:
        command: AlertCommand | None = None
        try:
            if state is None:
                raise CommandError("alerting is not enabled on this daemon (alerting.rules_file is unset)")
            try:
                data = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CommandError(f"unreadable JSON: {exc}") from exc
            command = AlertCommand.from_json(data)
            state, targets = apply_command(state, command)
        except CommandError as exc:
            refused.append((path, str(exc)))
            if command is not None:
                audit.append(AuditEntry(command, reason=str(exc)))
            continue
        result.applied.append((path.name, command, targets))
        audit.append(AuditEntry(command, tuple(targets)))
        done.append(path)
    if audit and alerts is not None and state is not None:
        alerts.replace_state(state, audit)
    for path in done:
        path.unlink(missing_ok=True)
    for path, reason in refused:
        _reject(path, reason)
        result.rejected.append((path.name, reason))
    return result


def spool_outcome(spooled: Path, wait_s: float) -> tuple[Literal["applied", "rejected", "spooled"], str]:
    """Wait up to ``wait_s`` for the daemon to take the command spooled at ``spooled``: whether it was
    applied, rejected (with the reason) or is still spooled."""
    reason = spooled.parent / "rejected" / (spooled.name + ".reason")
    deadline = time.monotonic() + wait_s
    while spooled.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if spooled.exists():
        return "spooled", ""
    if reason.exists():
        return "rejected", reason.read_text().strip()
    return "applied", ""


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def snapshot_rows(state: pl.DataFrame) -> list[dict[str, Any]]:
    """The state's rows as JSON-ready dicts (times ISO 8601)."""
    return [{k: _plain(v) for k, v in row.items()} for row in state.select(list(STATE_SCHEMA)).iter_rows(named=True)]


def write_snapshot(path: Path, state: pl.DataFrame) -> None:
    """Write the live alerts to ``path`` atomically (temp file in the same directory, then rename)."""
    body = {"version": SNAPSHOT_VERSION, "written_at": datetime.now(UTC).isoformat(), "alerts": snapshot_rows(state)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(temp, path)


def read_snapshot(path: Path) -> tuple[datetime, pl.DataFrame]:
    """When the snapshot at ``path`` was written, and its alerts (``STATE_SCHEMA``); ``StorageError`` if unreadable."""
    try:
        body = json.loads(path.read_text())
        written_at = datetime.fromisoformat(body["written_at"])
        rows = [
            tuple(
                datetime.fromisoformat(row[name]) if dtype == pl.Datetime("us", "UTC") and row[name] else row[name]
                for name, dtype in STATE_SCHEMA.items()
            )
            for row in body["alerts"]
        ]
    except FileNotFoundError as exc:
        raise StorageError(f"no alert snapshot at {path}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"cannot read the alert snapshot {path}: {exc}") from exc
    return written_at, state_from_rows(rows)
