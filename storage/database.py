"""Opening the DuckDB history file: one writing process per file, schema migrated on open."""

from __future__ import annotations

from pathlib import Path

import duckdb

from storage.errors import DatabaseLockedError, StorageError
from storage.schema import migrate


def open_database(
    path: Path,
    *,
    read_only: bool = False,
    memory_limit: str = "512MB",
    threads: int | None = None,
    checkpoint_threshold: str = "256MB",
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
    return con
