"""Results on the terminal: a table, CSV or JSON (the one place where every command's output becomes text).

- Query results (DuckDB's Arrow tables, a query service's polars frames) go through ``render``.
- The commands that print their own tables (``alerts``, ``rules dry-run``, ``archive``) build a
  ``TextTable`` of cells and the lines around it and call ``render_blocks``; their JSON documents go
  through ``render_document``.
- The cell formats those commands share (times, durations, byte sizes) are here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

import polars as pl
import pyarrow as pa
from rich import box
from rich.console import Console
from rich.table import Table

from storage.query import OutputFormat, QueryResult, render_csv, render_json

DocumentFormat = Literal["table", "json"]
"""The formats of a command whose JSON is one document (alerts, rules dry-run, archive status)."""
QUERY_WIDTH = 200
"""Terminal columns of a query result's table."""


@dataclass(frozen=True)
class TextTable:
    """A table of text cells under column names, boxed (rich's heavy head) or plain (``boxed=False``)."""

    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    boxed: bool = True

    def add(self, *cells: str) -> None:
        """Append one row (one cell per column)."""
        self.rows.append(cells)


def render_blocks(blocks: Iterable[str | TextTable], width: int, *, highlight: bool = False) -> str:
    """``blocks`` as terminal text ``width`` columns wide: a string is one line of plain text (rich's
    highlighter only with ``highlight``), a ``TextTable`` a rich table."""
    console = Console(width=width)
    with console.capture() as captured:
        for block in blocks:
            if isinstance(block, TextTable):
                table = Table(*block.columns, box=box.HEAVY_HEAD if block.boxed else None)
                for row in block.rows:
                    table.add_row(*row)
                console.print(table)
            else:
                console.print(block, highlight=highlight, markup=False)
    return captured.get()


def _json_value(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def render_document(body: object) -> str:
    """``body`` as indented JSON ending in a newline (times and days as ISO 8601)."""
    return json.dumps(body, indent=1, default=_json_value) + "\n"


def render(result: QueryResult | pl.DataFrame | pa.Table, fmt: OutputFormat) -> str:
    """A query result as text: a table with a row count, CSV (DuckDB's writer) or JSON (ending in a newline)."""
    if isinstance(result, pl.DataFrame):
        result = QueryResult(result.to_arrow())
    elif not isinstance(result, QueryResult):
        result = QueryResult(result)
    if fmt == "csv":
        return render_csv(result)
    if fmt == "json":
        return render_json(result) + "\n"
    rows = result.rows  # converted from Arrow once
    table = TextTable(tuple(result.columns), [tuple("NULL" if v is None else str(v) for v in row) for row in rows])
    return render_blocks([table, f"({len(rows)} rows)"], QUERY_WIDTH, highlight=True)


def from_frame(frame: pl.DataFrame, max_rows: int) -> QueryResult:
    """A query service's answer (a polars frame) as a result of at most ``max_rows`` rows."""
    return QueryResult(frame.head(max_rows).to_arrow())


def format_time(value: datetime | None, *, seconds: bool = True) -> str:
    """``value`` in UTC as ``2026-03-01 12:00:05Z`` (``12:00Z`` without ``seconds``); ``-`` for None."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ" if seconds else "%Y-%m-%d %H:%MZ")


def format_age(seconds: float) -> str:
    """A duration in the unit that reads best: ``90 s``, ``15 min``, ``2.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_size(count: int) -> str:
    """A byte count in binary units: ``900 B``, ``4.8 MiB``."""
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
