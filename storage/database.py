"""Opening the DuckDB history file: one writing process per file, schema migrated on open."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from storage.errors import DatabaseLockedError, StorageError
from storage.schema import migrate


def open_database(
    path: Path,
    *,
    read_only: bool = False,
    memory_limit: str = "512MB",
    threads: int | None = None,
    checkpoint_threshold: str = "256MB",
    compatibility_version: str = "v1.5.0",
    sandbox: list[Path] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open (and, for writers, create and migrate) the history database at ``path``.

    ``memory_limit`` bounds DuckDB's buffer pool, which also holds the frame-key index, so the
    daemon's memory stays flat however long the history grows. ``checkpoint_threshold`` is the WAL
    size that triggers a checkpoint: DuckDB's 16 MB default checkpointed every few batches and cost a
    third of the write time (measured); a larger WAL only lengthens crash recovery.
    """
    config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": memory_limit}
    if not read_only:
        config["checkpoint_threshold"] = checkpoint_threshold
    if threads is not None:
        config["threads"] = threads
    if not read_only and not path.exists():
        config["storage_compatibility_version"] = compatibility_version
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise StorageError(f"no history database at {path}")
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseLockedError(f"{path} is held by another process (is a daemon running on it?): {exc}") from exc
        raise StorageError(f"cannot open {path}: {exc}") from exc
    if not read_only:
        migrate(con)
    if sandbox is not None:
        allowed = [str(d.resolve()) + "/" for d in sandbox]
        con.execute("SET allowed_directories = $dirs", {"dirs": allowed})
        con.execute("SET enable_external_access = false")
    return con


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """A table's column names in order; StorageError when the table is missing."""
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    if not rows:
        raise StorageError(f"table {table} is missing; was the database migrated?")
    return [str(r[0]) for r in rows]


def insert_rows(
    con: duckdb.DuckDBPyConnection, table: str, columns: list[str], rows: pl.DataFrame, returning: str = ""
) -> list[Any]:
    """INSERT ``rows``' ``columns`` in one Arrow scan (nothing for no rows); with ``returning``, skip key
    conflicts and return the inserted rows' ``returning`` columns."""
    if rows.is_empty():
        return []
    names = ", ".join(f'"{c}"' for c in columns)
    tail = f" ON CONFLICT DO NOTHING RETURNING {returning}" if returning else ""
    con.register("rows_to_insert", rows.select(columns))
    try:
        return con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM rows_to_insert{tail}").fetchall()
    finally:
        con.unregister("rows_to_insert")


def database_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file behind ``con``'s current database (None in memory)."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return Path(row[0]) if row and row[0] else None


def disk_full_detail(path: Path | None, exc: BaseException) -> str:
    """For a write that failed because a disk filled: what filled, e.g. ``; the filesystem of
    /data/orbitwatch.duckdb has 0 MiB free of 64 MiB``; empty for any other failure."""
    full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    if path is None or not (full or os.strerror(errno.ENOSPC) in str(exc)):
        return ""
    existing = next((p for p in path.parents if p.exists()), None)
    try:
        usage = shutil.disk_usage(existing or path.anchor or "/")
    except OSError:
        return ""
    mib = 1024 * 1024
    return f"; the filesystem of {path} has {usage.free // mib} MiB free of {usage.total // mib} MiB"
