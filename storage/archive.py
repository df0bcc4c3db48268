"""Reading the Parquet archive together with the live tables, so a query does not care where its rows are.

``attach_archive(con)`` turns, on one connection or cursor, every table with archived days into a TEMP
view of the same name: the live rows (``<catalog>.main.<table>``) ``UNION ALL BY NAME`` the Parquet files
that ``archive_log`` lists. The operator views are then made again as TEMP views over those. DuckDB
resolves an unqualified name to a TEMP object before ``main``, so saved queries and any SQL run unchanged.

The file list is read from ``archive_log`` (never a directory glob) in the caller's snapshot: retention
deletes a day's rows and logs its file in one transaction, so a snapshot sees each row either live or in a
listed file, never both and never neither. For that guarantee call ``attach_archive`` (or compare
``archive_version``) inside the query's own transaction. TEMP views belong to one connection (each cursor
is one): attach the archive on query cursors, never on the writer's, which inserts into the tables. TEMP
views made inside a transaction that is rolled back are gone again.

Parquet keeps DuckDB's types (``TIMESTAMPTZ`` comes back as ``TIMESTAMP WITH TIME ZONE``, ``REAL`` as
``FLOAT``, lists as lists), so the union has the live table's types; ``tests/test_archive_answers.py``
checks it.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import duckdb

from storage.schema import MIGRATIONS

ArchiveVersion = tuple[int, int]
"""``(files logged, newest log id)``: changes whenever retention commits a file; cache the views on it."""

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


def temp_view(statement: str) -> str:
    """A migration's ``CREATE VIEW`` statement as ``CREATE OR REPLACE TEMP VIEW``."""
    return _VIEW.sub(lambda m: f"CREATE OR REPLACE TEMP VIEW {m.group(1)} AS", statement, count=1)


def identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def current_catalog(con: duckdb.DuckDBPyConnection) -> str:
    """The catalog unqualified names resolve to (a file's stem, ``memory`` in memory)."""
    return str(con.execute("SELECT current_database()").fetchall()[0][0])


def _has_log(con: duckdb.DuckDBPyConnection, catalog: str) -> bool:
    """Whether ``catalog`` has ``archive_log`` (not a database older than schema v4 opened read-only)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name = 'archive_log'",
        [catalog],
    ).fetchall()[0]
    return bool(row[0])


def _log_rows(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[int, str, date, str]]:
    """``archive_log``'s ``(id, table_name, day, path)`` in id order."""
    if not _has_log(con, catalog):
        return []
    rows = con.execute(
        f"SELECT id, table_name, day, path FROM {identifier(catalog)}.main.archive_log ORDER BY id"
    ).fetchall()
    return [(int(i), str(t), d, str(p)) for i, t, d, p in rows]


def archive_version(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> ArchiveVersion:
    """``(files logged, newest log id)`` of ``catalog``'s archive (default: the current one); ``(0, 0)``
    when nothing was archived."""
    cat = catalog or current_catalog(con)
    if not _has_log(con, cat):
        return (0, 0)
    count, newest = con.execute(
        f"SELECT count(*), coalesce(max(id), 0) FROM {identifier(cat)}.main.archive_log"
    ).fetchall()[0]
    return (int(count), int(newest))


def archived_files(
    con: duckdb.DuckDBPyConnection, catalog: str | None = None, root: Path | None = None
) -> tuple[ArchiveVersion, dict[str, list[str]]]:
    """The archive's version and each table's logged files, oldest first, read in one statement (one
    snapshot). With ``root``, the files are looked for under it (an archive moved with its database)."""
    rows = _log_rows(con, catalog or current_catalog(con))
    files: dict[str, list[str]] = {}
    for _, table, day, logged in rows:
        path = logged if root is None else str(root / table / f"day={day.isoformat()}" / Path(logged).name)
        files.setdefault(table, []).append(path)
    return (len(rows), max((r[0] for r in rows), default=0)), files


def archive_source(live: str, files: list[str]) -> str:
    """SQL for a table's rows wherever they are: ``live`` (a qualified table) and its archived ``files``."""
    if not files:
        return f"SELECT * FROM {live}"
    listed = ", ".join(literal(f) for f in files)
    return (
        f"SELECT * FROM {live} UNION ALL BY NAME SELECT * FROM "
        f"read_parquet([{listed}], hive_partitioning = false, union_by_name = true)"
    )


def attach_archive(
    con: duckdb.DuckDBPyConnection, *, catalog: str | None = None, root: Path | None = None
) -> ArchiveVersion:
    """Make every archived table of ``catalog`` (default: the current one) a TEMP view over its live rows
    and its Parquet files, and the operator views TEMP views over those; nothing when nothing was archived.

    Idempotent. Returns the archive version the views were made for: a pooled cursor can skip the call
    while ``archive_version`` still returns it.
    """
    cat = catalog or current_catalog(con)
    version, files = archived_files(con, cat, root)
    if not files:
        return version
    for table, paths in files.items():
        live = f"{identifier(cat)}.main.{identifier(table)}"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {identifier(table)} AS {archive_source(live, paths)}")
    for _, statement in view_statements():
        con.execute(temp_view(statement))
    return version


class ArchiveViews:
    """The archive's views on pooled cursors, made again only when ``archive_log`` changed.

    Call ``prepare`` inside each query's transaction (the version and the file list are then read in the
    query's own snapshot), and ``forget`` when that transaction was rolled back (its views went with it).
    """

    def __init__(self) -> None:
        self._made: dict[int, ArchiveVersion] = {}

    def prepare(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Make (or keep) the union views on ``cursor`` for the archive as this transaction sees it."""
        version = archive_version(cursor)
        if self._made.get(id(cursor)) != version:
            self._made[id(cursor)] = attach_archive(cursor)

    def forget(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """``cursor``'s views are gone (rolled back): make them again next time."""
        self._made.pop(id(cursor), None)


def relocated_root(con: duckdb.DuckDBPyConnection, db_path: Path) -> Path | None:
    """Where a copied or moved history's archive is, when its files are not at the paths ``archive_log``
    names: ``<db>.archive`` beside ``db_path`` (None when the logged paths exist, or nothing was archived)."""
    _, files = archived_files(con)
    logged = next((paths[0] for paths in files.values() if paths), None)
    if logged is None or Path(logged).exists():
        return None
    return db_path.resolve().with_name(db_path.name + ".archive")
