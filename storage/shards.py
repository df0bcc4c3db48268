"""Querying several shards together: each daemon owns its own DuckDB file (static shards).

``open_shards(paths)`` attaches every shard read-only to an in-memory database and makes each table a view
over all shards (``UNION ALL BY NAME``), each shard's rows including its Parquet archive (the files its
``archive_log`` lists, see ``storage.archive``), then creates the operator views again over those, so that
fleet-wide aggregates (``fleet_utilization_1m``, ``tenant_usage_hourly``) are computed across shards and
archives, not per shard. Saved queries and any SQL then run unchanged. DuckDB allows one process per file:
a shard whose daemon is running cannot be attached (a clear error says which).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from storage.archive import archive_source, archived_files, identifier, temp_view, view_statements
from storage.errors import DatabaseLockedError, StorageError

__all__ = ["open_shards", "view_statements"]


def _attach(con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> None:
    """Attach ``path`` read-only as ``alias``; DatabaseLockedError when a process holds it."""
    if not path.exists():
        raise StorageError(f"no history database at {path}")
    try:
        con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS {alias} (READ_ONLY)")
    except duckdb.Error as exc:  # another process holds it (IOException), or this one (ResourceInUse)
        if "lock" in str(exc).lower() or isinstance(exc, duckdb.ResourceInUseException):
            raise DatabaseLockedError(f"{path} is held by another process (is its daemon running?): {exc}") from exc
        raise StorageError(f"cannot open {path}: {exc}") from exc


def open_shards(paths: list[Path]) -> duckdb.DuckDBPyConnection:
    """An in-memory connection where every table and view spans all ``paths`` (opened read-only) and their
    archives."""
    if not paths:
        raise StorageError("no shard given")
    con = duckdb.connect()
    aliases = [f"shard{index}" for index in range(len(paths))]
    for path, alias in zip(paths, aliases, strict=True):
        _attach(con, path, alias)
    tables = [
        str(row[0])
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_type = 'BASE TABLE'",
            [aliases[0]],
        ).fetchall()
    ]
    archives = {alias: archived_files(con, alias)[1] for alias in aliases}
    for table in tables:
        sources = (archive_source(f"{alias}.{identifier(table)}", archives[alias].get(table, [])) for alias in aliases)
        union = " UNION ALL BY NAME ".join(f"({source})" for source in sources)
        con.execute(f"CREATE TEMP VIEW {table} AS {union}")
    for _, statement in view_statements():
        con.execute(temp_view(statement))
    return con
