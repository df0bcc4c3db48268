"""Query results on the terminal: a table, CSV or JSON (one place for every command that prints results)."""

from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table

from storage.query import OutputFormat, QueryResult, render_csv, render_json


def render(result: QueryResult, fmt: OutputFormat) -> str:
    """``result`` as text: a table with a row count, CSV (DuckDB's writer) or JSON (ending in a newline)."""
    if fmt == "csv":
        return render_csv(result)
    if fmt == "json":
        return render_json(result) + "\n"
    table = Table(*result.columns, show_lines=False)
    rows = result.rows  # converted from Arrow once
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console = Console(width=200)
    with console.capture() as captured:
        console.print(table)
        console.print(f"({len(rows)} rows)")
    return captured.get()


def from_frame(frame: pl.DataFrame, max_rows: int) -> QueryResult:
    """A query service's answer (a polars frame) as a result of at most ``max_rows`` rows."""
    return QueryResult(frame.head(max_rows).to_arrow())
