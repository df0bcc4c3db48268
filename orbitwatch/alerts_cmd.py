"""``orbitwatch alerts`` (list, ack, shelve, unack, unshelve) and ``orbitwatch rules dry-run``.

DuckDB lets one process open a database file. When no daemon holds it, these commands read and change
``alert_state`` directly. While a daemon holds it, ``alerts`` lists the daemon's snapshot
(``<db>.alerts.json``, rewritten whenever the alert state changes) and the changing commands are spooled
to ``<db>.alerts.d/`` for the daemon to apply (``alerting.tables``). Every output says which path it took.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import click
import duckdb
import polars as pl
from rich.console import Console
from rich.table import Table

from orbitwatch.cli_common import CONFIG_OPTION, settings_or_exit
from storage.errors import DatabaseLockedError, StorageError

Format = Literal["table", "json"]
SHORT = 8
"""Characters of a fingerprint shown in tables (any unique prefix is accepted)."""
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
DB_OPTION = click.option(
    "--db", type=click.Path(path_type=Path, dir_okay=False), help="History file (default: storage.path)."
)
FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)


def _db_path(config_path: Path | None, db: Path | None) -> Path:
    return db if db is not None else settings_or_exit(config_path).storage.path


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _render(table: Table, footer: list[str]) -> str:
    console = Console(width=220)
    with console.capture() as captured:
        console.print(table)
        for line in footer:
            console.print(line, highlight=False, markup=False)
    return captured.get()


# ---- Reading the live alerts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveAlerts:
    """The live alerts and where they were read: the database, or the daemon's snapshot (then its time)."""

    state: pl.DataFrame
    source: Literal["database", "snapshot"]
    path: Path
    snapshot_at: datetime | None = None
    silences: Silences | None = None

    def describe(self) -> str:
        if self.snapshot_at is None:
            return f"source: database {self.path} (read directly: no daemon holds it)"
        age = (datetime.now(UTC) - self.snapshot_at).total_seconds()
        return (
            f"source: snapshot {self.path} written {_when(self.snapshot_at)} ({_age(age)} ago) by the daemon "
            "holding the database (rewritten whenever the alert state changes)"
        )


@dataclass(frozen=True)
class Silences:
    """What the rules file's Alertmanagers silence: silence ids by sent label set, and who did not answer."""

    by_labels: dict[tuple[tuple[str, str], ...], tuple[str, ...]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def of(self, labels: dict[str, str], rule: str) -> tuple[str, ...]:
        """The silences Alertmanager applies to the alert with ``labels`` (empty: none)."""
        from alerting.alertmanager import label_key

        return self.by_labels.get(label_key(labels, rule), ())

    def describe(self) -> str:
        line = f"silences read from Alertmanager hook(s) {', '.join(self.asked)}"
        return line + (f"; not answered: {'; '.join(self.problems)}" if self.problems else "")


def alertmanager_silences(rules_file: Path | None) -> Silences | None:
    """The silences of the ``alertmanager`` hooks of ``rules_file`` (None without such hooks); an
    Alertmanager that does not answer is reported, not fatal."""
    if rules_file is None:
        return None
    from alerting.alertmanager import AlertmanagerHook, silence_index
    from alerting.errors import AlertingError, DeliveryError
    from alerting.hooks import build_hook
    from alerting.rules import load_rules

    try:
        declared = [h for h in load_rules(rules_file).hooks if h.kind == "alertmanager"]
    except AlertingError as exc:
        raise click.ClickException(str(exc)) from exc
    if not declared:
        return None
    silences = Silences()
    for spec in declared:
        silences.asked.append(spec.name)
        try:
            hook = build_hook(spec.kind, spec.settings, spec.name)
        except AlertingError as exc:
            raise click.ClickException(str(exc)) from exc
        assert isinstance(hook, AlertmanagerHook)
        try:
            silences.by_labels.update(silence_index(hook.silenced()))
        except DeliveryError as exc:
            silences.problems.append(str(exc))
        finally:
            hook.close()
    return silences


def _read_db_state(path: Path) -> pl.DataFrame:
    from alerting.tables import read_state
    from storage.database import open_database

    con = open_database(path, read_only=True)
    try:
        return read_state(con)
    except duckdb.Error as exc:
        raise StorageError(f"cannot read alert_state from {path} (schema older than v3?): {exc}") from exc
    finally:
        con.close()


def live_alerts(db: Path) -> LiveAlerts:
    """The live alerts of ``db``: read directly when possible, else from the daemon's snapshot."""
    from alerting.tables import read_snapshot, snapshot_path

    try:
        return LiveAlerts(_read_db_state(db), "database", db)
    except DatabaseLockedError as exc:
        snapshot = snapshot_path(db)
        if not snapshot.exists():
            raise click.ClickException(
                f"{exc}; and there is no alert snapshot {snapshot} (is the daemon running with "
                "alerting.rules_file set?)"
            ) from exc
        try:
            written_at, state = read_snapshot(snapshot)
        except StorageError as snap_exc:
            raise click.ClickException(str(snap_exc)) from snap_exc
        return LiveAlerts(state, "snapshot", snapshot, written_at)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc


def alert_records(state: pl.DataFrame) -> list[dict[str, Any]]:
    """The alerts as dicts with their labels decoded, sorted by severity (worst first) then start time."""
    records = []
    for row in state.iter_rows(named=True):
        labels = json.loads(row["labels"])
        records.append(
            row
            | {
                "labels": labels,
                "rack_id": labels.get("rack_id"),
                "node": labels.get("node"),
                "gpu": labels.get("gpu"),
            }
        )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(
        records,
        key=lambda r: (
            _SEVERITY_ORDER.get(r["severity"], 9),
            r["started_at"] or far,
            r["rule"],
            r["rack_id"] or "",
            int(r["node"] or -1),
            int(r["gpu"] or -1),
            r["fingerprint"],
        ),
    )


_JSON_FIELDS = (
    "fingerprint",
    "rule",
    "status",
    "severity",
    "rack_id",
    "node",
    "gpu",
    "summary",
    "value",
    "started_at",
    "fired_at",
    "event_at",
    "learned_at",
    "playback",
    "acked_until",
    "shelved_until",
    "silenced_by",
    "labels",
)


def render_alerts(live: LiveAlerts, fmt: Format) -> str:
    """The live alerts as a table (with the source line) or as JSON (``source``, ``alerts``)."""
    records = alert_records(live.state)
    for r in records:
        r["silenced_by"] = list(live.silences.of(r["labels"], r["rule"])) if live.silences is not None else []
    if fmt == "json":
        body = {
            "source": live.source,
            "path": str(live.path),
            "snapshot_written_at": _iso(live.snapshot_at),
            "silences": live.silences.describe() if live.silences is not None else None,
            "alerts": [{name: _iso(r[name]) for name in _JSON_FIELDS} for r in records],
        }
        return json.dumps(body, indent=1) + "\n"
    columns = ["severity", "status", "rule", "fingerprint", "rack", "node", "gpu", "started_at", "event_at"]
    extra = ["silenced_by"] if live.silences is not None else []
    table = Table(*columns, "learned_at", "playback", "acked_until", "shelved_until", *extra)
    for r in records:
        playback = "-" if r["playback"] is None else ("yes" if r["playback"] else "no")
        table.add_row(
            r["severity"],
            r["status"],
            r["rule"],
            r["fingerprint"][:SHORT],
            r["rack_id"] or "-",
            r["node"] or "-",
            r["gpu"] or "-",
            _when(r["started_at"]),
            _when(r["event_at"]),
            _when(r["learned_at"]),
            playback,
            _when(r["acked_until"]),
            _when(r["shelved_until"]),
            *([", ".join(s[:SHORT] for s in r["silenced_by"]) or "-"] if extra else []),
        )
    firing = sum(r["status"] == "firing" for r in records)
    footer = [f"({len(records)} live alerts: {firing} firing, {len(records) - firing} pending)", live.describe()]
    if live.silences is not None:
        silenced = sum(bool(r["silenced_by"]) for r in records)
        footer.append(f"{silenced} silenced in Alertmanager; {live.silences.describe()}")
    return _render(table, footer)


# ---- Commands: list, ack, shelve, unack, unshelve ----------------------------------------------------------


@click.group(invoke_without_command=True)
@CONFIG_OPTION
@DB_OPTION
@FORMAT_OPTION
@click.pass_context
def alerts(ctx: click.Context, config_path: Path | None, db: Path | None, fmt: Format) -> None:
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


def _duration(text: str, option: str = "--for") -> timedelta:
    from alerting.rules import parse_duration

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


def _target(state: pl.DataFrame, fingerprints: list[str]) -> str:
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


def _wait_for(spooled: Path, wait_s: float) -> None:
    """Wait up to ``wait_s`` for the daemon to take ``spooled``; report whether it was applied or rejected."""
    from alerting.tables import spool_outcome

    outcome, reason = spool_outcome(spooled, wait_s)
    if outcome == "spooled":
        click.echo(f"not applied yet after {wait_s:g} s (is the daemon running?); it stays spooled")
    elif outcome == "rejected":
        raise click.ClickException(f"the daemon rejected the command: {reason}")
    else:
        click.echo("the daemon applied it")


def run_command(
    ctx: click.Context, config_path: Path | None, db: Path | None, command_args: dict[str, Any], wait_s: float
) -> None:
    """Apply an ack/shelve command directly, or spool it when a daemon holds the database."""
    from alerting.errors import CommandError
    from alerting.tables import AlertCommand, apply_direct, read_state
    from storage.database import open_database

    parent = ctx.obj or {}
    path = _db_path(config_path or parent.get("config_path"), db or parent.get("db"))
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
    click.echo(f"{_done(command)} {_target(state, fingerprints)}{_until(command)}")
    click.echo(f"applied directly to {path} (no daemon holds it)")


def _spool(path: Path, command: Any, wait_s: float) -> None:
    from alerting.errors import CommandError
    from alerting.tables import (
        read_snapshot,
        resolve_fingerprint,
        snapshot_path,
        spool_command,
        spool_dir,
    )

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
                command = type(command)(**{**_fields(command), "fingerprint": full})
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


def _fields(command: Any) -> dict[str, Any]:
    from alerting.tables import COMMAND_FIELDS

    return {name: getattr(command, name) for name in COMMAND_FIELDS}


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment
        return ""


def _done(command: Any) -> str:
    return {"ack": "acknowledged", "unack": "un-acknowledged", "shelve": "shelved", "unshelve": "unshelved"}[
        command.action
    ]


def _until(command: Any) -> str:
    return f" until {_when(command.until)}" if command.until is not None else ""


WAIT_OPTION = click.option(
    "--wait",
    "wait_s",
    type=float,
    default=0.0,
    show_default=True,
    help="When spooled: wait this many seconds for the daemon to apply (or reject) it.",
)


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
    run_command(ctx, config_path, db, {"action": "ack", "fingerprint": fingerprint, "until": until}, wait_s)


@alerts.command("unack")
@click.argument("fingerprint")
@CONFIG_OPTION
@DB_OPTION
@WAIT_OPTION
@click.pass_context
def unack(ctx: click.Context, fingerprint: str, config_path: Path | None, db: Path | None, wait_s: float) -> None:
    """Remove the acknowledgement of a live alert (FINGERPRINT or a unique prefix)."""
    run_command(ctx, config_path, db, {"action": "unack", "fingerprint": fingerprint}, wait_s)


@alerts.command("shelve")
@click.argument("fingerprint", required=False)
@click.option("--match", "pairs", multiple=True, help="label=value (repeatable): every live alert with all of them.")
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
    run_command(ctx, config_path, db, args, wait_s)


@alerts.command("unshelve")
@click.argument("fingerprint", required=False)
@click.option("--match", "pairs", multiple=True, help="label=value (repeatable): every live alert with all of them.")
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
    run_command(ctx, config_path, db, {"action": "unshelve", "fingerprint": fingerprint, "match": match}, wait_s)


# ---- rules dry-run ---------------------------------------------------------------------------------------

_VIEWS = {"gpu": "gpu_rollups_1m", "rack": "rack_rollups_1m"}


@dataclass
class Incident:
    """One alert that fired in the dry run: from its firing window to its resolving one (None: still firing)."""

    rule: str
    fingerprint: str
    labels: dict[str, str]
    severity: str
    fired_at: datetime
    resolved_at: datetime | None = None

    @property
    def entity(self) -> str:
        where = self.labels.get("rack_id", "-")
        if "node" in self.labels:
            where += f" node {self.labels['node']} gpu {self.labels['gpu']}"
        return where


@dataclass
class DryRun:
    """What the rules would have done over the stored history."""

    start: datetime | None
    end: datetime | None
    incidents: list[Incident] = field(default_factory=list)
    pending_at_end: int = 0
    steps: int = 0
    notes: list[str] = field(default_factory=list)


def _columns(rules: list[Any], scope: str) -> list[str]:
    from alerting.rules import ENTITY, Rate, StateCondition, Threshold

    wanted: dict[str, None] = dict.fromkeys([*ENTITY[scope], "window_start"])  # type: ignore[index]
    for rule in rules:
        if rule.scope != scope:
            continue
        match rule.condition:
            case Threshold() | Rate() as levels:
                wanted[levels.column] = None
            case StateCondition():
                wanted["state"] = None
            case _:  # absent: rack_now only
                pass
    return list(wanted)


def _bounds(con: duckdb.DuckDBPyConnection, scopes: list[str]) -> tuple[datetime | None, datetime | None]:
    lows, highs = [], []
    for scope in scopes:
        [(low, high)] = con.execute(f"SELECT min(window_start), max(window_start) FROM {_VIEWS[scope]}").fetchall()
        if low is not None:
            lows.append(low)
            highs.append(high)
    if not lows:
        return None, None
    return min(lows).astimezone(UTC), max(highs).astimezone(UTC) + timedelta(minutes=1)


def _load(
    con: duckdb.DuckDBPyConnection, scope: str, columns: list[str], start: datetime, end: datetime
) -> pl.DataFrame:
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f"SELECT {names} FROM {_VIEWS[scope]} WHERE window_start >= ? AND window_start < ? ORDER BY window_start"
    try:
        frame: pl.DataFrame = con.sql(sql, params=[start, end]).pl()
    except duckdb.Error as exc:
        raise click.ClickException(f"reading {_VIEWS[scope]}: {exc}") from exc
    return frame.with_columns(pl.col("window_start").dt.convert_time_zone("UTC"))


def _minutes(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    at = start
    while at < end:
        yield at
        at += step


def dry_run(
    con: duckdb.DuckDBPyConnection,
    ruleset: Any,
    start: datetime | None,
    end: datetime | None,
    step: timedelta = timedelta(minutes=1),
    chunk: timedelta = timedelta(hours=1),
) -> DryRun:
    """Evaluate ``ruleset``'s windowed rules over the stored minutes in event order, ``step`` at a time.

    Each step's GPU and rack windows (``gpu_rollups_1m``, ``rack_rollups_1m``) are observed and the
    lifecycle advanced with ``as_of`` = the step's end; rate rules get the stored windows of their lookback
    before each step as context (from before ``start`` too). Rules of scope rack_now are skipped (the
    ground's "now" judgements are not stored as a history).
    """
    from alerting.lifecycle import STATE_SCHEMA, advance, observe

    rules = [r for r in ruleset.rules if r.scope != "rack_now"]
    result = DryRun(start, end)
    skipped = [r.name for r in ruleset.rules if r.scope == "rack_now"]
    if skipped:
        result.notes.append(
            f"skipped (scope rack_now: the ground's 'now' judgements are not kept as history): {', '.join(skipped)}"
        )
    rates = [r.name for r in rules if r.kind == "rate"]
    if rates:
        result.notes.append(f"rate rules evaluated with the stored earlier windows as context: {', '.join(rates)}")
    scopes = sorted({r.scope for r in rules})
    if not scopes:
        return result
    con.execute("SET TimeZone = 'UTC'")
    low, high = _bounds(con, scopes)
    start = start or low
    end = end or high
    result.start, result.end = start, end
    if start is None or end is None or low is None or high is None:
        result.notes.append("no stored windows")
        return result
    start = start.replace(second=0, microsecond=0)
    lookback = max((r.lookback for r in rules), default=timedelta(0))
    columns = {scope: _columns(rules, scope) for scope in scopes}
    state = pl.DataFrame(schema=STATE_SCHEMA)
    open_: dict[str, Incident] = {}
    for chunk_start in _minutes(start, end, chunk):
        chunk_end = min(chunk_start + chunk, end)
        loaded = {scope: _load(con, scope, columns[scope], chunk_start - lookback, chunk_end) for scope in scopes}
        for at in _minutes(chunk_start, chunk_end, step):
            until = min(at + step, chunk_end)
            frames = {
                scope: f.filter((pl.col("window_start") >= at) & (pl.col("window_start") < until))
                for scope, f in loaded.items()
            }
            frames = {scope: f for scope, f in frames.items() if not f.is_empty()}
            if not frames:
                continue
            context = {
                scope: loaded[scope].filter((pl.col("window_start") >= at - lookback) & (pl.col("window_start") < at))
                for scope in frames
            }
            held, clear = observe(rules, frames, context)
            stepped = advance(state, held, clear, until, rules)
            state = stepped.state
            result.steps += 1
            for t in stepped.transitions.iter_rows(named=True):
                fp = t["fingerprint"]
                if t["status"] == "firing":
                    open_[fp] = Incident(t["rule"], fp, json.loads(t["labels"]), t["severity"], t["event_at"])
                elif t["status"] == "updated" and fp in open_:
                    incident = open_[fp]
                    if _SEVERITY_ORDER[t["severity"]] < _SEVERITY_ORDER[incident.severity]:
                        incident.severity = t["severity"]
                elif t["status"] == "resolved" and fp in open_:
                    incident = open_.pop(fp)
                    incident.resolved_at = t["ends_at"]
                    result.incidents.append(incident)
    result.incidents.extend(open_.values())
    result.incidents.sort(key=lambda i: (i.fired_at, i.rule, i.fingerprint))
    result.pending_at_end = state.filter(pl.col("status") == "pending").height
    return result


def render_dry_run(run: DryRun, fmt: Format) -> str:
    """The incidents (rule, entity, severity, from, to) and totals, as a table or JSON."""
    resolved = sum(i.resolved_at is not None for i in run.incidents)
    firing = len(run.incidents) - resolved
    per_rule: dict[str, int] = {}
    for incident in run.incidents:
        per_rule[incident.rule] = per_rule.get(incident.rule, 0) + 1
    if fmt == "json":
        body = {
            "from": _iso(run.start),
            "to": _iso(run.end),
            "incidents": [
                {
                    "rule": i.rule,
                    "fingerprint": i.fingerprint,
                    "entity": i.entity,
                    "labels": i.labels,
                    "severity": i.severity,
                    "from": _iso(i.fired_at),
                    "to": _iso(i.resolved_at),
                }
                for i in run.incidents
            ],
            "totals": {
                "fired": len(run.incidents),
                "resolved": resolved,
                "firing_at_end": firing,
                "pending_at_end": run.pending_at_end,
                "per_rule": per_rule,
            },
            "notes": run.notes,
        }
        return json.dumps(body, indent=1) + "\n"
    table = Table("rule", "entity", "severity", "from", "to", "lasted")
    for i in run.incidents:
        lasted = "-" if i.resolved_at is None else _age((i.resolved_at - i.fired_at).total_seconds())
        to = "still firing" if i.resolved_at is None else _when(i.resolved_at)
        table.add_row(i.rule, i.entity, i.severity, _when(i.fired_at), to, lasted)
    footer = [
        f"history {_when(run.start)} to {_when(run.end)}, {run.steps} evaluation steps",
        f"totals: {len(run.incidents)} fired, {resolved} resolved, {firing} still firing at the end, "
        f"{run.pending_at_end} pending at the end",
    ]
    footer += [f"  {rule}: {count} fired" for rule, count in sorted(per_rule.items())]
    footer += [f"note: {note}" for note in run.notes]
    return _render(table, footer)


def _timestamp(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=option) from exc
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


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
    fmt: Format,
) -> None:
    """Evaluate a rules file over the stored history: what would have fired and resolved, and when.

    Reads the views gpu_rollups_1m and rack_rollups_1m in event order, STEP minutes at a time, and runs
    the alert lifecycle (for, keep_firing_for, severities) with the ground's clock at each step's end.
    Rules of scope rack_now are skipped (no history of the "now" judgement); rate rules get the stored
    earlier windows as context. Needs to read the database: stop the daemon, or run on a copy of the file.
    """
    from alerting.errors import AlertingError, RulesError
    from alerting.rules import load_rules
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
