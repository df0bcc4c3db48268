"""The JSON snapshot of a daemon's live alerts, for the CLI and the web view to list while it holds the file.

The daemon writes it next to the database (``snapshot_path``: ``<db>.alerts.json``, atomically: temp file
then rename) at start-up and whenever it commits a transaction that changed the alert state
(``alerting.tables.AlertTables``); readers show its age.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from alerting.state import STATE_SCHEMA, state_from_rows
from storage.errors import StorageError

SNAPSHOT_VERSION = 1


def snapshot_path(database: Path) -> Path:
    """Where the daemon writes the snapshot of its live alerts: ``<database>.alerts.json``."""
    return database.with_name(database.name + ".alerts.json")


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
