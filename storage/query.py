"""Operator queries: run SQL on the history and render the result as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import duckdb

from storage.errors import QueryError

OutputFormat = Literal["table", "csv", "json"]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names and rows of one query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    max_rows: int | None = None,
    parameters: dict[str, int | float | str] | None = None,
) -> QueryResult:
    """Run ``sql`` (with named ``$parameters``); a DuckDB error becomes QueryError with DuckDB's own message."""
    try:
        cursor = con.execute(sql, parameters) if parameters else con.execute(sql)
        if cursor.description is None:
            return QueryResult([], [])
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall() if max_rows is None else cursor.fetchmany(max_rows)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    return QueryResult(columns, rows)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def render_csv(result: QueryResult) -> str:
    """The result as CSV with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([[_plain(v) for v in row] for row in result.rows])
    return out.getvalue()


def render_json(result: QueryResult) -> str:
    """The result as a JSON array of objects."""
    records = [dict(zip(result.columns, (_plain(v) for v in row), strict=True)) for row in result.rows]
    return json.dumps(records, indent=1, default=str)
