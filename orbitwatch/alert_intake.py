"""Operators' alert commands taken over HTTP (``POST /v1/alerts/commands``), by the same path as the CLI.

The query service runs on its own threads and must not touch the writer's connection, so a command is
spooled (``alerting.spool.spool_command``) exactly as ``orbitwatch alerts ack`` spools it while a daemon
runs; the daemon applies it between batches, with its ``alert_audit`` row, and the request waits a few
seconds for the outcome. The server sets ``requested_at`` (a client's clock is not trusted); ``via`` is
``web`` for the web view and ``api`` otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alerting.commands import AlertCommand
from alerting.errors import CommandError
from alerting.spool import spool_command, spool_dir, spool_outcome
from orbitwatch.errors import ServiceError
from orbitwatch.query_service import AlertCommands

MAX_NAME = 200
"""Characters of ``requested_by`` at most."""


def alert_intake(db_path: Path, wait_s: float = 5.0) -> AlertCommands:
    """The callable the query service hands each command to: validate, spool, wait up to ``wait_s``."""

    def take(body: dict[str, Any]) -> tuple[str, str]:
        fields = {**body, "requested_at": None, "via": body.get("via") or "api"}
        try:
            command = AlertCommand.from_json(fields)
        except CommandError as exc:
            raise ServiceError("bad_request", str(exc)) from exc
        by = command.requested_by.strip()
        if not by or len(by) > MAX_NAME:
            raise ServiceError("bad_request", f"requested_by must name who asks (1 to {MAX_NAME} characters)")
        spooled = spool_command(spool_dir(db_path), command)
        outcome, reason = spool_outcome(spooled, wait_s)
        if outcome == "rejected":
            raise ServiceError("rejected", f"the daemon rejected {command.describe()}: {reason}")
        return outcome, command.describe()

    return take
