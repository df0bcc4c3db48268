"""A table's shape, declared once: its columns' polars dtypes, nullability, defaults and constraints.

A ``Table`` renders its ``CREATE TABLE`` DDL (``ddl``, ``statements``) and gives its ``polars_schema``; the
DuckDB type of a column follows from its polars dtype (``duckdb_type``), so the two cannot disagree. The
history's tables are declared in ``storage.tables``.

**Declarations and migrations.** The migrations of ``storage.schema`` keep their DDL as frozen text and
never render a declaration. A migration is history: it must create the same table on a fresh database
today as it did on the databases that ran it years ago, or a fresh database and an upgraded one would
diverge. A declaration is the table's *current* shape (what code reads and writes), which a later
migration may change (``ALTER TABLE``). Changing a table is therefore two edits: a new migration and the
declaration. ``tests/test_table_declarations.py`` checks that they agree: each declared table in a freshly
migrated database has exactly the declaration's columns, types, nullability, defaults, keys and checks,
and reads into polars as ``polars_schema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

_SCALARS: tuple[tuple[pl.DataType, str], ...] = (
    (pl.String(), "VARCHAR"),
    (pl.Boolean(), "BOOLEAN"),
    (pl.Int32(), "INTEGER"),
    (pl.Int64(), "BIGINT"),
    (pl.UInt32(), "UINTEGER"),
    (pl.Float32(), "REAL"),
    (pl.Float64(), "DOUBLE"),
    (pl.Binary(), "BLOB"),
    (pl.Date(), "DATE"),
    (pl.Datetime("us", "UTC"), "TIMESTAMPTZ"),
)


def duckdb_type(dtype: pl.DataType) -> str:
    """The DuckDB type a column of polars ``dtype`` is stored as (a list as ``<inner>[]``).

    ``ValueError`` for a dtype the history does not use.
    """
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        return duckdb_type(inner() if isinstance(inner, type) else inner) + "[]"
    for polars_dtype, name in _SCALARS:
        if dtype == polars_dtype:
            return name
    raise ValueError(f"no DuckDB type declared for polars dtype {dtype}")


@dataclass(frozen=True, slots=True)
class Column:
    """One column: name, polars dtype (which gives the DuckDB type) and its constraints."""

    name: str
    dtype: pl.DataType
    nullable: bool = False
    default: str | None = None
    """A SQL expression, e.g. ``nextval('alert_outbox_id')``."""
    check: str | None = None
    """A SQL condition, e.g. ``attempts >= 0``."""
    unique: bool = False

    @property
    def duckdb_type(self) -> str:
        """The column's DuckDB type."""
        return duckdb_type(self.dtype)

    def ddl(self) -> str:
        """The column's line of ``CREATE TABLE``."""
        parts = [f'"{self.name}"', self.duckdb_type]
        if not self.nullable:
            parts.append("NOT NULL")
        if self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        if self.unique:
            parts.append("UNIQUE")
        if self.check is not None:
            parts.append(f"CHECK ({self.check})")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Table:
    """A table of the history: its columns in order, primary key and the sequences its defaults use."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    sequences: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate column names")
        missing = [key for key in self.primary_key if key not in names]
        if missing:
            raise ValueError(f"{self.name}: primary key column(s) {', '.join(missing)} are not columns")

    @classmethod
    def from_polars(
        cls,
        name: str,
        schema: Mapping[str, pl.DataType],
        *,
        nullable: tuple[str, ...] = (),
        extra: tuple[Column, ...] = (),
        primary_key: tuple[str, ...] = (),
    ) -> Table:
        """A table of the columns of a polars ``schema`` (``NOT NULL`` but for ``nullable``), then ``extra``.

        For frames whose shape ``processing`` owns (it cannot import ``storage``): the table follows it.
        """
        unknown = sorted(set(nullable) - set(schema))
        if unknown:
            raise ValueError(f"{name}: nullable column(s) {', '.join(unknown)} are not in the schema")
        columns = tuple(Column(n, dtype, nullable=n in nullable) for n, dtype in schema.items())
        return cls(name, columns + extra, primary_key)

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(column.name for column in self.columns)

    @property
    def polars_schema(self) -> dict[str, pl.DataType]:
        """The columns as a polars schema, in order (what reading the table into polars gives)."""
        return {column.name: column.dtype for column in self.columns}

    def ddl(self) -> str:
        """``CREATE TABLE`` for the table (its sequences first: ``statements``)."""
        lines = [column.ddl() for column in self.columns]
        if self.primary_key:
            lines.append("PRIMARY KEY (" + ", ".join(f'"{key}"' for key in self.primary_key) + ")")
        return f"CREATE TABLE {self.name} (\n    " + ",\n    ".join(lines) + "\n)"

    def statements(self) -> tuple[str, ...]:
        """The statements that create the table on an empty database: sequences, then ``CREATE TABLE``."""
        return (*(f"CREATE SEQUENCE {sequence} START 1" for sequence in self.sequences), self.ddl())

    def select_sql(self) -> str:
        """``SELECT`` of every column in declaration order (names quoted)."""
        return "SELECT " + ", ".join(f'"{name}"' for name in self.names) + f" FROM {self.name}"
