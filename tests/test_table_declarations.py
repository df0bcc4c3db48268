"""Each declared table (``storage.tables``) against the table a freshly migrated database has.

The migrations keep their DDL frozen (``storage.table``); these tests are what keeps the declarations and
the migrations in step: same columns in the same order, types, nullability, defaults, keys and checks,
and the same polars schema on reading.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import polars as pl
import pytest

from storage.schema import migrate
from storage.table import Column, Table, duckdb_type
from storage.tables import DECLARED


@pytest.fixture(scope="module")
def migrated() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    migrate(con)
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


def _describe(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[object, ...]]:
    """``(name, type, null, key, default)`` per column, in order."""
    return [tuple(row[:5]) for row in con.execute(f"DESCRIBE {table}").fetchall()]


def _constraints(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[object, ...]]:
    rows = con.execute(
        "SELECT constraint_type, expression, constraint_column_names FROM duckdb_constraints() WHERE table_name = ?",
        [table],
    ).fetchall()
    return sorted((kind, expression, tuple(columns)) for kind, expression, columns in rows)


def _spelled(column: Column) -> str:
    """The column's type as DESCRIBE spells it."""
    return column.duckdb_type.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")


@pytest.mark.parametrize("table", DECLARED, ids=lambda t: t.name)
def test_migrated_table_has_the_declared_columns(migrated: duckdb.DuckDBPyConnection, table: Table) -> None:
    described = _describe(migrated, table.name)
    expected = [
        (c.name, _spelled(c), "YES" if c.nullable else "NO", "PRI" if c.name in table.primary_key else None)
        for c in table.columns
    ]
    assert [row[:4] for row in described] == expected
    assert [row[4] for row in described] == [c.default for c in table.columns]


@pytest.mark.parametrize("table", DECLARED, ids=lambda t: t.name)
def test_declared_ddl_creates_the_migrated_table(migrated: duckdb.DuckDBPyConnection, table: Table) -> None:
    con = duckdb.connect()
    for statement in table.statements():
        con.execute(statement)
    assert _describe(con, table.name) == _describe(migrated, table.name)
    assert _constraints(con, table.name) == _constraints(migrated, table.name)


@pytest.mark.parametrize("table", DECLARED, ids=lambda t: t.name)
def test_migrated_table_reads_as_the_polars_schema(migrated: duckdb.DuckDBPyConnection, table: Table) -> None:
    read = migrated.sql(f"SELECT * FROM {table.name}").pl().schema
    assert read == pl.Schema(table.polars_schema)


def test_every_table_is_declared_once() -> None:
    names = [table.name for table in DECLARED]
    assert len(names) == len(set(names))


def test_an_undeclared_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="no DuckDB type"):
        duckdb_type(pl.Int8())
    assert duckdb_type(pl.List(pl.List(pl.Int32()))) == "INTEGER[][]"


def test_a_key_must_be_a_column() -> None:
    with pytest.raises(ValueError, match="primary key"):
        Table("t", (Column("a", pl.String()),), primary_key=("b",))
