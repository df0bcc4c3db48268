"""The click commands ``orbitwatch alerts`` (list, ack, shelve, unack, unshelve) and ``orbitwatch rules dry-run``.

They parse options and hand over: the listing to ``alerts_view``, the operator's actions to
``alerts_actions`` (applied directly, or spooled while a daemon holds the database), the dry run to
``alerts_dry_run``; ``render`` turns what they return into text.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from orbitwatch.alerts_actions import apply_or_spool
from orbitwatch.alerts_dry_run import dry_run, render_dry_run
from orbitwatch.alerts_view import alertmanager_silences, live_alerts, render_alerts
from orbitwatch.cli_common import CONFIG_OPTION, settings_or_exit
from orbitwatch.render import DocumentFormat
from storage.errors import DatabaseLockedError, StorageError

DB_OPTION = click.option(
    "--db", type=click.Path(path_type=Path, dir_okay=False), help="History file (default: storage.path)."
)
FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
WAIT_OPTION = click.option(
    "--wait",
    "wait_s",
    type=float,
    default=0.0,
    show_default=True,
    help="When spooled: wait this many seconds for the daemon to apply (or reject) it.",
)
MATCH_OPTION = click.option(
    "--match", "pairs", multiple=True, help="label=value (repeatable): every live alert with all of them."
)


def _db_path(config_path: Path | None, db: Path | None) -> Path:
    return db if db is not None else settings_or_exit(config_path).storage.path


def _duration(text: str, option: str = "--for") -> timedelta:
    from alerting.rules.vocabulary import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc
    if value <= timedelta(0):
        raise click.BadParameter("must be longer than 0", param_hint=option)
    return value


def _matcher(pairs: tuple[str, ...]) -> dict[str, str]:
    match: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value:
            raise click.BadParameter(f"{pair!r} is not label=value", param_hint="--match")
        match[name.strip()] = value
    return match


def _timestamp(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=option) from exc
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _act(
    ctx: click.Context, config_path: Path | None, db: Path | None, command_args: dict[str, Any], wait_s: float
) -> None:
    """Apply or spool an action on the database named here or on the ``alerts`` group."""
    parent = ctx.obj or {}
    path = _db_path(config_path or parent.get("config_path"), db or parent.get("db"))
    apply_or_spool(path, command_args, wait_s)


# ---- orbitwatch alerts: list, ack, shelve, unack, unshelve -------------------------------------------------


@click.group(invoke_without_command=True)
@CONFIG_OPTION
@DB_OPTION
@FORMAT_OPTION
@click.pass_context
def alerts(ctx: click.Context, config_path: Path | None, db: Path | None, fmt: DocumentFormat) -> None:
    """List live alerts (pending and firing), worst severity first; ack or shelve them.

    Reads the database when no daemon holds it, else the daemon's snapshot (<db>.alerts.json, its age
    shown). With alertmanager hooks in alerting.rules_file, each alert also shows the Alertmanager
    silences that apply to it (read from their API; one that does not answer is named, not fatal).
    ack/shelve/unack/unshelve apply directly without a daemon, else they are spooled to <db>.alerts.d/
    and the running daemon applies them at its next batch or idle poll.
    """
    ctx.obj = {"config_path": config_path, "db": db}
    if ctx.invoked_subcommand is None:
        settings = settings_or_exit(config_path)
        live = live_alerts(db if db is not None else settings.storage.path)
        live = replace(live, silences=alertmanager_silences(settings.alerting.rules_file))
        click.echo(render_alerts(live, fmt), nl=False)


@alerts.command("ack")
@click.argument("fingerprint")
@click.option("--for", "for_", default="2h", show_default=True, help="How long: 30m, 2h, 1h30m.")
@CONFIG_OPTION
@DB_OPTION
@WAIT_OPTION
@click.pass_context
def ack(
    ctx: click.Context, fingerprint: str, for_: str, config_path: Path | None, db: Path | None, wait_s: float
) -> None:
    """Acknowledge a live alert (FINGERPRINT or a unique prefix): its notifications are held back until then.

    At expiry an alert still firing is notified once more. A resolution is notified if its firing was.
    """
    until = datetime.now(UTC) + _duration(for_)
    _act(ctx, config_path, db, {"action": "ack", "fingerprint": fingerprint, "until": until}, wait_s)


@alerts.command("unack")
@click.argument("fingerprint")
@CONFIG_OPTION
@DB_OPTION
@WAIT_OPTION
@click.pass_context
def unack(ctx: click.Context, fingerprint: str, config_path: Path | None, db: Path | None, wait_s: float) -> None:
    """Remove the acknowledgement of a live alert (FINGERPRINT or a unique prefix)."""
    _act(ctx, config_path, db, {"action": "unack", "fingerprint": fingerprint}, wait_s)


@alerts.command("shelve")
@click.argument("fingerprint", required=False)
@MATCH_OPTION
@click.option("--for", "for_", required=True, help="How long: 30m, 2h, 1h30m.")
@CONFIG_OPTION
@DB_OPTION
@WAIT_OPTION
@click.pass_context
def shelve_command(
    ctx: click.Context,
    fingerprint: str | None,
    pairs: tuple[str, ...],
    for_: str,
    config_path: Path | None,
    db: Path | None,
    wait_s: float,
) -> None:
    """Shelve live alerts: one FINGERPRINT, or every alert matching --match label=value ... (e.g.
    --match satellite=sat-0001). Their notifications are held back until then; only alerts live now are
    shelved (new ones are not).
    """
    until = datetime.now(UTC) + _duration(for_)
    match = _matcher(pairs)
    if (fingerprint is None) == (not match):
        raise click.UsageError("give a FINGERPRINT or --match label=value, not both")
    args = {"action": "shelve", "fingerprint": fingerprint, "match": match, "until": until}
    _act(ctx, config_path, db, args, wait_s)


@alerts.command("unshelve")
@click.argument("fingerprint", required=False)
@MATCH_OPTION
@CONFIG_OPTION
@DB_OPTION
@WAIT_OPTION
@click.pass_context
def unshelve_command(
    ctx: click.Context,
    fingerprint: str | None,
    pairs: tuple[str, ...],
    config_path: Path | None,
    db: Path | None,
    wait_s: float,
) -> None:
    """Unshelve live alerts: one FINGERPRINT, or every alert matching --match label=value ..."""
    match = _matcher(pairs)
    if (fingerprint is None) == (not match):
        raise click.UsageError("give a FINGERPRINT or --match label=value, not both")
    _act(ctx, config_path, db, {"action": "unshelve", "fingerprint": fingerprint, "match": match}, wait_s)


# ---- orbitwatch rules dry-run ------------------------------------------------------------------------------


@click.command("dry-run")
@click.argument("path", type=click.Path(path_type=Path))
@CONFIG_OPTION
@DB_OPTION
@click.option("--from", "start", help="First window (ISO 8601, inclusive; default: the oldest stored).")
@click.option("--to", "end", help="End (ISO 8601, exclusive; default: after the newest stored window).")
@click.option("--step", default="1m", show_default=True, help="Minutes evaluated at a time (like one batch).")
@FORMAT_OPTION
def rules_dry_run(
    path: Path,
    config_path: Path | None,
    db: Path | None,
    start: str | None,
    end: str | None,
    step: str,
    fmt: DocumentFormat,
) -> None:
    """Evaluate a rules file over the stored history: what would have fired and resolved, and when.

    Reads the views gpu_rollups_1m and rack_rollups_1m in event order, STEP minutes at a time, and runs
    the alert lifecycle (for, keep_firing_for, severities) with the ground's clock at each step's end.
    Rules of scope rack_now are skipped (no history of the "now" judgement); rate rules get the stored
    earlier windows as context. Needs to read the database: stop the daemon, or run on a copy of the file.
    """
    from alerting.errors import AlertingError, RulesError
    from alerting.rules.loading import load_rules
    from storage.database import open_database

    try:
        ruleset = load_rules(path)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from exc
    first, last = _timestamp(start, "--from"), _timestamp(end, "--to")
    if first is not None and last is not None and last <= first:
        raise click.BadParameter("must be after --from", param_hint="--to")
    every = _duration(step, "--step")
    if every % timedelta(minutes=1):
        raise click.BadParameter("must be whole minutes", param_hint="--step")
    db_path = _db_path(config_path, db)
    try:
        con = open_database(db_path, read_only=True)
    except DatabaseLockedError as exc:
        raise click.ClickException(
            f"{exc}. The dry run reads the stored history, which a running daemon does not share: stop the "
            f"daemon, or copy the file while it is stopped and pass --db COPY"
        ) from exc
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        result = dry_run(con, ruleset, first, last, every)
    except AlertingError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        con.close()
    click.echo(render_dry_run(result, fmt), nl=False)
