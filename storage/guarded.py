"""Guarded read-only queries: what the daemon's query service runs for operators beside the writer.

One query = one snapshot: it runs in a ``READ ONLY`` transaction on its own cursor of the daemon's connection,
so it sees exactly the batches committed when it started (each batch's rows, derived tables and offsets are
one transaction, so never half a batch), and the writer goes on meanwhile (DuckDB's MVCC).

The guards, each refusal a ``QueryRefusedError`` whose ``kind`` names it:

- ``read_only``: one statement, a ``SELECT`` (which includes ``FROM``-first, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``,
  ``UNPIVOT``), a ``PIVOT`` or an ``EXPLAIN``; the read-only transaction refuses any write that slips through
  (``nextval``...). DuckDB parses a ``PIVOT`` without an ``IN`` list into a MULTI statement (it first reads the
  pivot column's distinct values), which its JSON serializer cannot show: such a statement must begin with
  ``PIVOT``, ``UNPIVOT``, ``SELECT``, ``FROM`` or ``WITH`` (so ``COPY (PIVOT ...) TO``, ``CREATE TABLE ... AS
  PIVOT`` and ``INSERT ... PIVOT`` are refused), and the forbidden functions are looked for in its text.
- ``file_access``: the daemon's DuckDB runs with external access off (``storage.database.open_database``'s
  sandbox): only the archive directory and the database's own files can be read. DuckDB's permission error is
  reported as this kind.
- ``timeout``: the query is interrupted after ``timeout_s``.
- ``too_large``: the result is streamed in Arrow batches and refused as soon as it passes ``max_rows`` or
  ``max_bytes`` (refused, never silently truncated).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from storage.errors import QueryError, QueryRefusedError

_READ_STATEMENTS = {"SELECT", "EXPLAIN"}
_FORBIDDEN_FUNCTIONS = {"checkpoint", "force_checkpoint"}
_PIVOT = re.compile(r"\b(UN)?PIVOT\b", re.IGNORECASE)
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*(\w*)", re.DOTALL)  # comments, "(" skipped
_READ_LEADS = {"PIVOT", "UNPIVOT", "SELECT", "FROM", "WITH"}  # what a read-only MULTI may begin with
_FORBIDDEN_CALL = re.compile(rf"\b({'|'.join(sorted(_FORBIDDEN_FUNCTIONS))})\b\W*\(", re.IGNORECASE)  # quoted or not
_BATCH_ROWS = 65_536
_PASSED_MAX = 1024
_passed: dict[str, None] = {}
"""Statements found read-only, oldest first (at most ``_PASSED_MAX``): the verdict depends on the text alone,
so the saved queries and a web page's repeated questions are not parsed again (2-8 ms each)."""
_passed_lock = threading.Lock()
_STEPS = ("guard", "begin", "execute", "convert", "commit")
Parameters = dict[str, int | float | str]


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """The service's limits for one query."""

    timeout_s: float = 30.0
    max_rows: int = 1_000_000
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class GuardedResult:
    """A query's result and where its time went.

    ``phases`` maps each step to its seconds, in order: ``guard`` (parsing the statement and checking it is
    a read), ``begin`` (the snapshot and the archive's views), ``execute`` (DuckDB running the query and
    handing over its Arrow batches), ``convert`` (Arrow to polars) and ``commit``. ``execute_cpu`` is the CPU
    this thread used during ``execute``: with DuckDB on one thread (the daemon's default while processing
    is on) the calling thread does all of DuckDB's work, so ``execute - execute_cpu`` is time the query
    was ready to run but waited (for a core, for the GIL while batches were handed over, or for a lock).
    """

    frame: pl.DataFrame
    phases: dict[str, float]

    @property
    def elapsed_s(self) -> float:
        """Seconds from the guard to the commit."""
        return sum(s for name, s in self.phases.items() if name in _STEPS)


def check_read_only(cursor: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one read statement (``QueryRefusedError`` kind ``read_only``)."""
    if sql in _passed:
        return
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    if len(statements) != 1:
        raise QueryRefusedError("read_only", f"send exactly one statement per query (got {len(statements)})")
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    pivot = kind == "MULTI" and _PIVOT.search(sql) is not None and _leading_keyword(sql) in _READ_LEADS
    if kind not in _READ_STATEMENTS and not pivot:
        raise QueryRefusedError(
            "read_only", f"only read statements (SELECT, PIVOT, EXPLAIN) are allowed; this is a {kind} statement"
        )
    if pivot:
        called = {m.group(1).lower() for m in _FORBIDDEN_CALL.finditer(sql)}
    else:
        called = _function_names(cursor, sql) & _FORBIDDEN_FUNCTIONS
    if called:
        raise QueryRefusedError("read_only", f"{', '.join(sorted(called))}() is not allowed in a query")
    with _passed_lock:
        if len(_passed) >= _PASSED_MAX:
            del _passed[next(iter(_passed))]
        _passed[sql] = None


def _leading_keyword(sql: str) -> str:
    """The first keyword of ``sql``, upper case (comments and opening parentheses skipped)."""
    match = _LEADING.match(sql)
    return match.group(1).upper() if match else ""


def run_guarded(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    parameters: Parameters | None,
    limits: QueryLimits,
    prepare: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> GuardedResult:
    """Run one read-only query on ``cursor`` in its own snapshot, within ``limits``.

    ``prepare`` runs first in the same transaction (e.g. the archive's union views, kept after the commit).
    DuckDB's own errors become ``QueryError`` with its message; guard refusals ``QueryRefusedError``; the
    transaction is then rolled back.
    """
    clock = _Clock()
    check_read_only(cursor, sql)
    clock.lap("guard")
    cursor.execute("BEGIN TRANSACTION READ ONLY")
    committed = False
    try:
        with _Deadline(cursor, limits.timeout_s) as deadline:
            try:
                if prepare is not None:
                    prepare(cursor)
                clock.lap("begin")
                cpu = time.thread_time()
                relation = cursor.sql(sql, params=parameters) if parameters else cursor.sql(sql)
                batches = _fetch(relation, limits) if relation is not None else None
                clock.lap("execute")
                clock.phases["execute_cpu"] = time.thread_time() - cpu
                frame = _frame(batches) if batches is not None else pl.DataFrame()
                clock.lap("convert")
            except duckdb.InterruptException:
                if deadline.fired:
                    raise QueryRefusedError(
                        "timeout", f"cancelled after {limits.timeout_s:g} s (query.statement_timeout_s)"
                    ) from None
                raise
            except duckdb.PermissionException as exc:
                raise QueryRefusedError("file_access", f"the query service reads no files: {exc}") from exc
            except duckdb.Error as exc:
                raise QueryError(str(exc)) from exc
        cursor.execute("COMMIT")  # nothing written; keeps the TEMP views ``prepare`` made for the next query
        committed = True
        clock.lap("commit")
    finally:
        if not committed:
            _rollback(cursor)
    return GuardedResult(frame, clock.phases)


class _Clock:
    """Seconds per step: ``lap(name)`` charges the time since the previous lap to ``name``."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = now - self._last
        self._last = now


def _fetch(relation: duckdb.DuckDBPyRelation, limits: QueryLimits) -> pa.Table:
    reader = relation.to_arrow_reader(_BATCH_ROWS)
    try:
        return _collect(reader, limits)
    finally:
        reader.close()  # a pending result would keep the transaction from rolling back


def _collect(reader: pa.RecordBatchReader, limits: QueryLimits) -> pa.Table:
    batches, rows, size = [], 0, 0
    for batch in _batches(reader):
        rows += batch.num_rows
        size += batch.nbytes
        if rows > limits.max_rows:
            raise QueryRefusedError(
                "too_large",
                f"the result has more than {limits.max_rows:,} rows (query.max_result_rows): "
                "aggregate it or add a LIMIT",
            )
        if size > limits.max_bytes:
            raise QueryRefusedError(
                "too_large",
                f"the result is larger than {limits.max_bytes:,} bytes (query.max_result_bytes): "
                "select fewer columns or rows",
            )
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)  # a Table always converts to a DataFrame
    return frame


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


def _function_names(cursor: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    """Every function name in the statement's parse tree (DuckDB's ``json_serialize_sql``)."""
    try:
        tree = json.loads(cursor.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchall()[0][0])
    except (duckdb.Error, json.JSONDecodeError, IndexError):
        return set()
    names: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            name = node.get("function_name")
            if isinstance(name, str):
                names.add(name.lower())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def _rollback(cursor: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # the transaction already ended (DuckDB ended a failed one)
        cursor.execute("ROLLBACK")


class _Deadline:
    """Interrupts ``cursor`` after ``seconds`` unless the query finished first (no interrupt after the end)."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self._cursor = cursor
        self._lock = threading.Lock()
        self._done = False
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._done = True
            self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if not self._done:
                self.fired = True
                self._cursor.interrupt()
