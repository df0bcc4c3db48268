"""The live alerts as ``orbitwatch alerts`` lists them: where they are read, their silences, their rows.

DuckDB lets one process open a database file. When no daemon holds it, ``alert_state`` is read directly;
while a daemon holds it, the daemon's snapshot (``<db>.alerts.json``, rewritten whenever the alert state
changes) is read instead. The listing says which path it took.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import click
import duckdb
import polars as pl

from orbitwatch.render import DocumentFormat, TextTable, format_age, format_time, render_blocks, render_document
from storage.errors import DatabaseLockedError, StorageError

SHORT = 8
"""Characters of a fingerprint shown in tables (any unique prefix is accepted)."""
WIDTH = 220
"""Terminal columns of the alerts and dry-run tables."""
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class LiveAlerts:
    """The live alerts and where they were read: the database, or the daemon's snapshot (then its time)."""

    state: pl.DataFrame
    source: Literal["database", "snapshot"]
    path: Path
    snapshot_at: datetime | None = None
    silences: Silences | None = None

    def describe(self) -> str:
        """The source line: the database read directly, or the snapshot with its age."""
        if self.snapshot_at is None:
            return f"source: database {self.path} (read directly: no daemon holds it)"
        age = (datetime.now(UTC) - self.snapshot_at).total_seconds()
        return (
            f"source: snapshot {self.path} written {format_time(self.snapshot_at)} ({format_age(age)} ago) by "
            "the daemon holding the database (rewritten whenever the alert state changes)"
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
        """Which Alertmanager hooks were asked, and those that did not answer."""
        line = f"silences read from Alertmanager hook(s) {', '.join(self.asked)}"
        return line + (f"; not answered: {'; '.join(self.problems)}" if self.problems else "")


def alertmanager_silences(rules_file: Path | None) -> Silences | None:
    """The silences of the ``alertmanager`` hooks of ``rules_file`` (None without such hooks); an
    Alertmanager that does not answer is reported, not fatal."""
    if rules_file is None:
        return None
    from alerting.alertmanager import AlertmanagerHook, silence_index
    from alerting.errors import AlertingError, DeliveryError
    from alerting.hooks.registry import build_hook
    from alerting.rules.loading import load_rules

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
    from alerting.snapshot import read_snapshot, snapshot_path

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
_TABLE_COLUMNS = (
    "severity",
    "status",
    "rule",
    "fingerprint",
    "rack",
    "node",
    "gpu",
    "started_at",
    "event_at",
    "learned_at",
    "playback",
    "acked_until",
    "shelved_until",
)


def alerts_document(live: LiveAlerts, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON listing: where the alerts were read (``source``, ``path``, ...) and the ``alerts``."""
    return {
        "source": live.source,
        "path": str(live.path),
        "snapshot_written_at": live.snapshot_at,
        "silences": live.silences.describe() if live.silences is not None else None,
        "alerts": [{name: r[name] for name in _JSON_FIELDS} for r in records],
    }


def alerts_table(live: LiveAlerts, records: list[dict[str, Any]]) -> list[str | TextTable]:
    """The table listing: one row per alert (short fingerprints, UTC times), then the totals and source."""
    silenced_column = live.silences is not None
    table = TextTable((*_TABLE_COLUMNS, *(["silenced_by"] if silenced_column else [])))
    for r in records:
        playback = "-" if r["playback"] is None else ("yes" if r["playback"] else "no")
        table.add(
            r["severity"],
            r["status"],
            r["rule"],
            r["fingerprint"][:SHORT],
            r["rack_id"] or "-",
            r["node"] or "-",
            r["gpu"] or "-",
            format_time(r["started_at"]),
            format_time(r["event_at"]),
            format_time(r["learned_at"]),
            playback,
            format_time(r["acked_until"]),
            format_time(r["shelved_until"]),
            *([", ".join(s[:SHORT] for s in r["silenced_by"]) or "-"] if silenced_column else []),
        )
    firing = sum(r["status"] == "firing" for r in records)
    lines: list[str | TextTable] = [
        table,
        f"({len(records)} live alerts: {firing} firing, {len(records) - firing} pending)",
        live.describe(),
    ]
    if live.silences is not None:
        silenced = sum(bool(r["silenced_by"]) for r in records)
        lines.append(f"{silenced} silenced in Alertmanager; {live.silences.describe()}")
    return lines


def render_alerts(live: LiveAlerts, fmt: DocumentFormat) -> str:
    """The live alerts as a table (with the source line) or as JSON (``source``, ``alerts``)."""
    records = alert_records(live.state)
    for r in records:
        r["silenced_by"] = list(live.silences.of(r["labels"], r["rule"])) if live.silences is not None else []
    if fmt == "json":
        return render_document(alerts_document(live, records))
    return render_blocks(alerts_table(live, records), WIDTH)
