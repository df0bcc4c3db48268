"""CSV output follows DuckDB's conventions: ``orbitwatch query --format csv`` and the query service's CSV
write what DuckDB's own CSV writer (``COPY ... (FORMAT csv, HEADER)``) writes for the same query."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from orbitwatch.render import from_frame, render
from orbitwatch.result_formats import decode, encode
from storage.database import open_database
from storage.query import render_csv, run_query
from tests.test_cli import orbitwatch

# Booleans, NULLs of several types, timestamps with and without a zone and sub-second parts, dates,
# lists (with NULLs and commas), structs, maps, decimals, doubles, quotes and newlines in strings.
QUERY = """
SELECT * FROM (VALUES
    (true,  NULL::INTEGER, TIMESTAMP '2026-11-01 10:00:00',     TIMESTAMPTZ '2026-11-01 10:00:00.25+00',
     DATE '2026-11-01', [1, 2, NULL], ['a,b', 'c"d'], {'node': 3, 'gpu': 5}, MAP {'k': 1}, 1.50::DECIMAL(10, 2),
     2.0::DOUBLE, 'say "hi"' || chr(10) || 'twice'),
    (false, 7,             TIMESTAMP '2026-11-01 10:00:00.123456', NULL,
     NULL, [], NULL, NULL, NULL, NULL, 1e20::DOUBLE, NULL),
    (NULL,  -1,            NULL,                                 TIMESTAMPTZ '2026-11-02 00:00:00+00',
     DATE '2026-11-02', NULL, ['x'], {'node': NULL, 'gpu': 1}, MAP {}, -0.01::DECIMAL(10, 2), NULL, '')
) AS t(flag, n, ts, tz, day, ints, strs, place, m, amount, f, note)
ORDER BY n NULLS FIRST
"""


def duckdb_csv(con: duckdb.DuckDBPyConnection, sql: str, out: Path) -> str:
    """What DuckDB's own CSV writer writes for ``sql``."""
    con.execute(f"COPY ({sql}) TO '{out}' (FORMAT csv, HEADER)")
    return out.read_text()


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A migrated history file (the query needs no table of it; the CLI needs a history to open)."""
    path = tmp_path / "history.duckdb"
    open_database(path).close()
    return path


def test_the_query_command_writes_csv_as_duckdb_does(history: Path, tmp_path: Path) -> None:
    done = orbitwatch("query", "--db", str(history), "--format", "csv", QUERY)
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(history), read_only=True) as con:
        expected = duckdb_csv(con, QUERY, tmp_path / "expected.csv")
    assert done.stdout == expected
    assert "true" in expected
    assert "false" in expected  # the properties the comparison is about are in the data
    assert "True" not in expected


def test_the_query_service_csv_and_the_arrow_round_trip_write_what_duckdb_writes(tmp_path: Path) -> None:
    """The service answers with a polars frame (Arrow); its CSV, and the CLI's from an Arrow answer, match."""
    with duckdb.connect() as con:
        expected = duckdb_csv(con, QUERY, tmp_path / "expected.csv")
        frame = decode(encode(con.sql(QUERY).pl(), "arrow"), "arrow")  # as the service holds and sends it
    assert encode(frame, "csv").decode() == expected
    assert render(from_frame(frame, 10_000), "csv") == expected


def test_max_rows_and_statements_without_a_result(tmp_path: Path) -> None:
    with duckdb.connect() as con:
        five = run_query(con, "SELECT range AS i FROM range(100000)", max_rows=5)
        assert five.rows == [(0,), (1,), (2,), (3,), (4,)]
        assert render_csv(five) == "i\n0\n1\n2\n3\n4\n"
        assert run_query(con, "SET threads = 1").rows == []
        assert run_query(con, "SELECT $x + 1 AS y", parameters={"x": 2}).rows == [(3,)]
