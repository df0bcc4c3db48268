"""Querying several shards together: each daemon owns its own DuckDB file (static shards).

``open_shards(paths)`` attaches every shard read-only to an in-memory database and makes each table a view
over all shards (``UNION ALL BY NAME``), then creates the operator views again over those, so that fleet-wide
aggregates (``fleet_utilization_1m``, ``tenant_usage_hourly``) are computed across shards, not per shard.
Saved queries and any SQL then run unchanged. DuckDB allows one process per file: a shard whose daemon is
running cannot be attached (a clear error says which).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from storage.errors import DatabaseLockedError, StorageError
from storage.schema import MIGRATIONS

_VIEW = re.compile(r"^\s*CREATE VIEW (\w+) AS", re.IGNORECASE)


def view_statements() -> list[tuple[str, str]]:
    """``(name, CREATE VIEW statement)`` of every operator view, in migration order (later ones win)."""
    views: dict[str, str] = {}
    for migration in MIGRATIONS:
        for statement in migration.statements:
            match = _VIEW.match(statement)
            if match:
                views[match.group(1)] = statement
    return list(views.items())


def open_shards(paths: list[Path]) -> duckdb.DuckDBPyConnection:
    """An in-memory connection where every table and view spans all ``paths`` (opened read-only)."""
    if not paths:
        raise StorageError("no shard given")
    con = duckdb.connect()
    aliases = []
    for index, path in enumerate(paths):
        if not path.exists():
            raise StorageError(f"no history database at {path}")
        alias = f"shard{index}"
        try:
            con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS {alias} (READ_ONLY)")
        except duckdb.Error as exc:  # another process holds it (IOException), or this one (ResourceInUse)
            if "lock" in str(exc).lower() or isinstance(exc, duckdb.ResourceInUseException):
                raise DatabaseLockedError(f"{path} is held by another process (is its daemon running?): {exc}") from exc
            raise StorageError(f"cannot open {path}: {exc}") from exc
        aliases.append(alias)
    tables = [
        str(row[0])
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_type = 'BASE TABLE'",
            [aliases[0]],
        ).fetchall()
    ]
    for table in tables:
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {alias}.{table}" for alias in aliases)
        con.execute(f"CREATE TEMP VIEW {table} AS {union}")
    for _, statement in view_statements():
        con.execute(_VIEW.sub(lambda m: f"CREATE TEMP VIEW {m.group(1)} AS", statement, count=1))
    return con
