"""Operator queries: run SQL on the history; a result is an Arrow table, rendered as CSV or JSON here.

CSV is written by DuckDB's own CSV writer (``COPY ... (FORMAT csv, HEADER)``) from the result's Arrow
table, so ``orbitwatch query --format csv`` writes exactly what DuckDB and its CLI write for the same query:
``true``/``false``, empty fields for NULL, ``2026-01-01 10:00:00.5`` timestamps, ``[1, 2, NULL]`` lists.
Timestamps with a time zone are written in UTC with ``+00`` (DuckDB without its ICU extension, which the
product does not load: nothing is fetched at run time).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from storage.errors import QueryError

OutputFormat = Literal["table", "csv", "json"]
_BATCH_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The result of one query as an Arrow table (column types as DuckDB returned them)."""

    table: pa.Table

    @property
    def columns(self) -> list[str]:
        """The column names, in order (duplicates kept)."""
        return list(self.table.column_names)

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        """The rows as tuples of Python values, as DuckDB's ``fetchall`` gives them (maps as dicts,
        intervals as timedeltas with a month of 30 days)."""
        columns = [column.to_pylist(maps_as_pydicts="strict") for column in self.table.columns]
        if any(pa.types.is_interval(t) for t in self.table.schema.types):
            columns = [[_timedelta(v) for v in values] for values in columns]
        return list(zip(*columns, strict=True))


def _timedelta(value: Any) -> Any:
    if isinstance(value, pa.MonthDayNano):
        return timedelta(days=value.months * 30 + value.days, microseconds=value.nanoseconds // 1000)
    return value


def run_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    max_rows: int | None = None,
    parameters: dict[str, int | float | str] | None = None,
) -> QueryResult:
    """Run ``sql`` (with named ``$parameters``); a DuckDB error becomes QueryError with DuckDB's own message.

    At most ``max_rows`` rows are fetched (streamed in batches, so a large result is not read whole).
    """
    try:
        relation = con.sql(sql, params=parameters) if parameters else con.sql(sql)
        if relation is None:  # a statement without a result
            return QueryResult(pa.table({}))
        reader = relation.to_arrow_reader(_BATCH_ROWS)
        batches: list[pa.RecordBatch] = []
        fetched = 0
        while max_rows is None or fetched < max_rows:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            batches.append(batch)
            fetched += batch.num_rows
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    table = pa.Table.from_batches(batches, schema=reader.schema)
    return QueryResult(table if max_rows is None else table.slice(0, max_rows))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def render_csv(result: QueryResult) -> str:
    """The result as CSV with a header row, written by DuckDB's CSV writer."""
    with duckdb.connect() as con, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.csv"
        try:
            con.from_arrow(result.table).write_csv(str(out), header=True)
        except duckdb.Error as exc:
            raise QueryError(f"cannot write the result as CSV: {exc}") from exc
        return out.read_text(encoding="utf-8")


def render_json(result: QueryResult) -> str:
    """The result as a JSON array of objects."""
    records = [dict(zip(result.columns, (_plain(v) for v in row), strict=True)) for row in result.rows]
    return json.dumps(records, indent=1, default=str)
