"""The spool of operators' alert commands, for the daemon that holds the database file.

DuckDB lets one process open the file, so while a daemon runs the CLI can neither read ``alert_state`` nor
change it. Instead the CLI **spools** each ack/shelve/unack/unshelve as a JSON file (``AlertCommand``) into
``spool_dir`` (``<db>.alerts.d/``), and the daemon applies them (``apply_spool``) on the writer's
connection, in a transaction of their own, only while no batch write is in flight; applied files are
deleted, a rejected one is moved to ``rejected/`` with a ``.reason`` file beside it. The daemon's live
alerts are listed from its snapshot (``alerting.snapshot``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Literal

from alerting.audit import AuditEntry
from alerting.commands import AlertCommand, apply_command
from alerting.errors import CommandError
from alerting.tables import AlertTables


def spool_dir(database: Path) -> Path:
    """Where the CLI spools commands for the daemon holding ``database``: ``<database>.alerts.d``."""
    return database.with_name(database.name + ".alerts.d")


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
