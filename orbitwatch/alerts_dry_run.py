"""``orbitwatch rules dry-run``'s work: a rules file evaluated over the stored history, and its report.

The stored one-minute windows (``gpu_rollups_1m``, ``rack_rollups_1m``) are replayed in event order through
the alert lifecycle; what would have fired and resolved, and when, is reported as a table or JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
import duckdb
import polars as pl

from orbitwatch.alerts_view import WIDTH
from orbitwatch.render import DocumentFormat, TextTable, format_age, format_time, render_blocks, render_document

if TYPE_CHECKING:
    from alerting.rules.vocabulary import Severity

_VIEWS = {"gpu": "gpu_rollups_1m", "rack": "rack_rollups_1m"}


@dataclass
class Incident:
    """One alert that fired in the dry run: from its firing window to its resolving one (None: still firing)."""

    rule: str
    fingerprint: str
    labels: dict[str, str]
    severity: Severity
    fired_at: datetime
    resolved_at: datetime | None = None

    @property
    def entity(self) -> str:
        """Where it fired: the rack, and the node and GPU for a GPU alert."""
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
    from alerting.rules.conditions import Rate, StateCondition, Threshold
    from alerting.rules.vocabulary import ENTITY

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


def _notes(ruleset: Any, rules: list[Any]) -> list[str]:
    """What the dry run leaves out (rack_now rules) and how it evaluates rate rules."""
    notes = []
    skipped = [r.name for r in ruleset.rules if r.scope == "rack_now"]
    if skipped:
        notes.append(
            f"skipped (scope rack_now: the ground's 'now' judgements are not kept as history): {', '.join(skipped)}"
        )
    rates = [r.name for r in rules if r.kind == "rate"]
    if rates:
        notes.append(f"rate rules evaluated with the stored earlier windows as context: {', '.join(rates)}")
    return notes


def _record(transitions: pl.DataFrame, open_: dict[str, Incident], result: DryRun) -> None:
    """Open an incident per firing, raise its severity per worse update, close it at its resolution."""
    from alerting.evaluate import SEVERITY_RANK

    for t in transitions.iter_rows(named=True):
        fp = t["fingerprint"]
        if t["status"] == "firing":
            open_[fp] = Incident(t["rule"], fp, json.loads(t["labels"]), t["severity"], t["event_at"])
        elif t["status"] == "updated" and fp in open_:
            incident = open_[fp]
            if SEVERITY_RANK[t["severity"]] > SEVERITY_RANK[incident.severity]:
                incident.severity = t["severity"]
        elif t["status"] == "resolved" and fp in open_:
            incident = open_.pop(fp)
            incident.resolved_at = t["ends_at"]
            result.incidents.append(incident)


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
    from alerting.lifecycle import advance
    from alerting.observe import observe
    from alerting.state import STATE_SCHEMA

    rules = [r for r in ruleset.rules if r.scope != "rack_now"]
    result = DryRun(start, end, notes=_notes(ruleset, rules))
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
            _record(stepped.transitions, open_, result)
    result.incidents.extend(open_.values())
    result.incidents.sort(key=lambda i: (i.fired_at, i.rule, i.fingerprint))
    result.pending_at_end = state.filter(pl.col("status") == "pending").height
    return result


def _per_rule(run: DryRun) -> dict[str, int]:
    per_rule: dict[str, int] = {}
    for incident in run.incidents:
        per_rule[incident.rule] = per_rule.get(incident.rule, 0) + 1
    return per_rule


def dry_run_document(run: DryRun) -> dict[str, Any]:
    """The JSON report: the span, each incident (rule, entity, labels, severity, from, to), totals, notes."""
    resolved = sum(i.resolved_at is not None for i in run.incidents)
    return {
        "from": run.start,
        "to": run.end,
        "incidents": [
            {
                "rule": i.rule,
                "fingerprint": i.fingerprint,
                "entity": i.entity,
                "labels": i.labels,
                "severity": i.severity,
                "from": i.fired_at,
                "to": i.resolved_at,
            }
            for i in run.incidents
        ],
        "totals": {
            "fired": len(run.incidents),
            "resolved": resolved,
            "firing_at_end": len(run.incidents) - resolved,
            "pending_at_end": run.pending_at_end,
            "per_rule": _per_rule(run),
        },
        "notes": run.notes,
    }


def dry_run_table(run: DryRun) -> list[str | TextTable]:
    """The table report: one row per incident (rule, entity, severity, from, to, lasted), then the totals."""
    table = TextTable(("rule", "entity", "severity", "from", "to", "lasted"))
    for i in run.incidents:
        lasted = "-" if i.resolved_at is None else format_age((i.resolved_at - i.fired_at).total_seconds())
        to = "still firing" if i.resolved_at is None else format_time(i.resolved_at)
        table.add(i.rule, i.entity, i.severity, format_time(i.fired_at), to, lasted)
    resolved = sum(i.resolved_at is not None for i in run.incidents)
    return [
        table,
        f"history {format_time(run.start)} to {format_time(run.end)}, {run.steps} evaluation steps",
        f"totals: {len(run.incidents)} fired, {resolved} resolved, {len(run.incidents) - resolved} still firing "
        f"at the end, {run.pending_at_end} pending at the end",
        *(f"  {rule}: {count} fired" for rule, count in sorted(_per_rule(run).items())),
        *(f"note: {note}" for note in run.notes),
    ]


def render_dry_run(run: DryRun, fmt: DocumentFormat) -> str:
    """The incidents (rule, entity, severity, from, to) and totals, as a table or JSON."""
    if fmt == "json":
        return render_document(dry_run_document(run))
    return render_blocks(dry_run_table(run), WIDTH)
