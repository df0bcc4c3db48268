"""An operator's action on live alerts (ack, unack, shelve, unshelve): applied directly, or spooled.

When no daemon holds the database the action changes ``alert_state`` at once. While a daemon holds it,
the action is spooled to ``<db>.alerts.d/`` for the daemon to apply at its next batch or idle poll
(``alerting.spool``); the fingerprint prefix is checked against the daemon's snapshot first. Every
output says which path it took.
"""

from __future__ import annotations

import dataclasses
import getpass
from pathlib import Path
from typing import Any

import click
import duckdb
import polars as pl

from orbitwatch.alerts_view import SHORT, alert_records
from orbitwatch.render import format_time
from storage.errors import DatabaseLockedError, StorageError

_DONE = {"ack": "acknowledged", "unack": "un-acknowledged", "shelve": "shelved", "unshelve": "unshelved"}


def apply_or_spool(path: Path, command_args: dict[str, Any], wait_s: float) -> None:
    """Apply an ack/shelve command to ``path`` directly, or spool it when a daemon holds the database
    (then wait up to ``wait_s`` for the daemon to take it)."""
    from alerting.commands import AlertCommand, apply_direct
    from alerting.errors import CommandError
    from alerting.tables import read_state
    from storage.database import open_database

    try:
        command = AlertCommand(**command_args, requested_by=_user())
    except CommandError as exc:
        raise click.UsageError(str(exc)) from exc
    if not path.exists():
        raise click.ClickException(f"no history database at {path}")
    try:
        con = open_database(path)
    except DatabaseLockedError:
        _spool(path, command, wait_s)
        return
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        try:
            fingerprints = apply_direct(con, command)
        except CommandError as exc:
            raise click.ClickException(f"{exc} in {path}") from exc
        except duckdb.Error as exc:
            raise click.ClickException(f"cannot change alert_state in {path}: {exc}") from exc
        state = read_state(con)
    finally:
        con.close()
    click.echo(f"{_DONE[command.action]} {_target(state, fingerprints)}{_until(command)}")
    click.echo(f"applied directly to {path} (no daemon holds it)")


def _target(state: pl.DataFrame, fingerprints: list[str]) -> str:
    """The alerts acted on: short fingerprint, then rule, severity, status and entity when live."""
    rows = {r["fingerprint"]: r for r in alert_records(state)}
    parts = []
    for fp in fingerprints:
        r = rows.get(fp)
        if r is None:
            parts.append(fp[:SHORT])
            continue
        where = r["rack_id"] or "-"
        if r["node"] is not None:
            where += f" node {r['node']} gpu {r['gpu']}"
        parts.append(f"{fp[:SHORT]} ({r['rule']} {r['severity']} {r['status']} on {where})")
    return ", ".join(parts)


def _spool(path: Path, command: Any, wait_s: float) -> None:
    """Spool ``command`` for the daemon holding ``path``, its target resolved in the daemon's snapshot."""
    from alerting.commands import resolve_fingerprint
    from alerting.errors import CommandError
    from alerting.snapshot import read_snapshot, snapshot_path
    from alerting.spool import spool_command, spool_dir

    note = ""
    snapshot = snapshot_path(path)
    if snapshot.exists():
        try:
            _, state = read_snapshot(snapshot)
        except StorageError:
            state = None
        if state is not None and command.fingerprint is not None:
            try:
                full = resolve_fingerprint(state, command.fingerprint)
                command = dataclasses.replace(command, fingerprint=full)
                note = f"target: {_target(state, [full])}"
            except CommandError as exc:
                note = f"warning: {exc} in the daemon's snapshot; the daemon checks it against its live state"
    spooled = spool_command(spool_dir(path), command)
    click.echo(f"{command.describe()}")
    if note:
        click.echo(note)
    click.echo(
        f"spooled to {spooled}: a daemon holds {path}; it applies the command at its next batch or idle poll "
        f"(a rejected command is moved to {spooled.parent / 'rejected'} with the reason)"
    )
    if wait_s > 0:
        _wait_for(spooled, wait_s)


def _wait_for(spooled: Path, wait_s: float) -> None:
    """Wait up to ``wait_s`` for the daemon to take ``spooled``; report whether it was applied or rejected."""
    from alerting.spool import spool_outcome

    outcome, reason = spool_outcome(spooled, wait_s)
    if outcome == "spooled":
        click.echo(f"not applied yet after {wait_s:g} s (is the daemon running?); it stays spooled")
    elif outcome == "rejected":
        raise click.ClickException(f"the daemon rejected the command: {reason}")
    else:
        click.echo("the daemon applied it")


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment
        return ""


def _until(command: Any) -> str:
    return f" until {format_time(command.until)}" if command.until is not None else ""
