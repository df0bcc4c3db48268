"""Exceptions raised by the storage package.

The root derives from ``orbitwatch.errors.OrbitwatchError``, so one ``except`` catches the whole product.

StorageError
├── SchemaVersionError   the database was written by a newer orbitwatch, or a migration failed
├── DatabaseLockedError  another process holds the DuckDB file
├── QueryError           an operator's SQL failed; carries DuckDB's own message
│   └── QueryRefusedError  a guard of the query service refused it (``kind`` says which)
└── ArchiveError         moving old days to the Parquet archive, or reading it back, failed
"""

from __future__ import annotations

from orbitwatch.errors import OrbitwatchError


class StorageError(OrbitwatchError):
    """Base class of every error raised by ``storage``."""


class SchemaVersionError(StorageError):
    """The database schema is newer than this code, or a migration failed."""


class DatabaseLockedError(StorageError):
    """Another process holds the DuckDB file (DuckDB allows one writing process per file)."""


class QueryError(StorageError):
    """An operator's SQL failed; the message is DuckDB's."""


class QueryRefusedError(QueryError):
    """A query-service guard refused the query: ``kind`` is read_only, file_access, timeout or too_large."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ArchiveError(StorageError):
    """Moving old days to the Parquet archive, or reading it back, failed (the rows stay live)."""
