"""Query results on the wire: JSON, CSV, Arrow IPC (stream) and Parquet."""

from __future__ import annotations

import io
from typing import Literal, get_args

import polars as pl

from storage.query import QueryResult, render_csv

WireFormat = Literal["json", "csv", "arrow", "parquet"]
WIRE_FORMATS: tuple[str, ...] = get_args(WireFormat)
CONTENT_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}


def encode(frame: pl.DataFrame, fmt: WireFormat) -> bytes:
    """``frame`` in ``fmt``: JSON is an array of row objects (timestamps ISO 8601), CSV has a header row."""
    if fmt == "json":
        return frame.write_json().encode()
    if fmt == "csv":  # DuckDB's CSV writer, as `orbitwatch query --format csv` and DuckDB's COPY
        return render_csv(QueryResult(frame.to_arrow())).encode()
    buffer = io.BytesIO()
    if fmt == "arrow":
        frame.write_ipc_stream(buffer)
    else:
        frame.write_parquet(buffer)
    return buffer.getvalue()


def decode(body: bytes, fmt: WireFormat) -> pl.DataFrame:
    """The inverse of ``encode`` (JSON and CSV lose types: prefer Arrow or Parquet for programs)."""
    source = io.BytesIO(body)
    if fmt == "arrow":
        return pl.read_ipc_stream(source)
    if fmt == "parquet":
        return pl.read_parquet(source)
    if fmt == "csv":
        return pl.read_csv(source)
    return pl.read_json(source)
