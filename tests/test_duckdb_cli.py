"""DuckDB's own command-line tool (PyPI duckdb-cli 1.5.6, next to the interpreter) reads a stopped daemon's
files: the history (written in storage format v1.5.0, also with an unreplayed WAL after SIGKILL) plus the
Parquet archive through ``orbitwatch archive views``, and answers every saved query and the whole-table
questions exactly as DuckDB-python does over live rows and archive.

Saved queries run two ways: their SQL verbatim through ``PREPARE``/``EXECUTE`` with named parameters (CSV
output: row counts and text columns compared), and with ``$name`` replaced by ``getvariable('name')`` after
``SET VARIABLE`` (values are typed, not pasted) so that ``COPY ... TO`` Parquet carries exact values back.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from orbitwatch.archive_cmd import archive, catalog_name, views_script
from storage.archive import attach_archive, literal
from storage.database import open_database
from storage.retention import archive_root
from tests.test_archive_answers import AGGREGATES, build_history, retain, same, saved_questions

CLI = Path(sys.executable).parent / "duckdb"
pytestmark = pytest.mark.skipif(not CLI.exists(), reason=f"no duckdb CLI at {CLI} (pip install duckdb-cli)")
REPO = Path(__file__).resolve().parents[1]
_PARAMETER = re.compile(r"\$(\w+)")


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped daemon's history after retention moved days to its archive (read-only from here on)."""
    path = build_history(tmp_path_factory.mktemp("stopped") / "orbitwatch.duckdb")
    retain(path)
    return path


def views_file(db: Path, directory: Path) -> Path:
    """What an operator saves from ``orbitwatch archive views --db DB``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITWATCH_")}
    result = CliRunner().invoke(archive, ["views", "--db", str(db)], env=env)
    assert result.exit_code == 0, result.output
    path = directory / "views.sql"
    path.write_text(result.stdout)
    return path


def duckdb_cli(db: Path, script: str, init: Path | None = None) -> str:
    """Run ``script`` in the duckdb CLI on ``db`` opened read-only; stop at the first error."""
    args = [str(CLI), "-bail", "-readonly", str(db), *(["-init", str(init)] if init else [])]
    done = subprocess.run(args, input=script, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def python_answers(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """DuckDB-python's answers over live rows and archive (sorted, as the CLI's are)."""
    con = open_database(db, read_only=True)
    try:
        attach_archive(con)
        answers = {name: con.execute(sql, values).fetchall() for name, sql, values in saved_questions()}
        answers |= {sql: con.execute(sql).fetchall() for sql in AGGREGATES}
        return answers
    finally:
        con.close()


def with_variables(sql: str, values: dict[str, int | float | str]) -> str:
    """``SET VARIABLE`` statements for ``values`` and ``sql`` reading them instead of ``$name``."""
    sets = [f'SET VARIABLE "{k}" = {literal(v) if isinstance(v, str) else v};' for k, v in values.items()]
    return "\n".join([*sets, _PARAMETER.sub(lambda m: f"getvariable('{m.group(1)}')", sql)])


def test_the_views_script_names_the_live_catalog_and_every_archived_table(stopped: Path, tmp_path: Path) -> None:
    script = views_file(stopped, tmp_path).read_text()
    assert catalog_name(stopped) == "orbitwatch"
    root = archive_root(stopped, None)
    assert script == views_script(root, "orbitwatch")
    assert f"""FROM "orbitwatch".main.gpu_samples UNION ALL BY NAME SELECT * FROM read_parquet('{root}/""" in script
    assert script.count("CREATE OR REPLACE TEMP VIEW") == 8 + 9  # archived tables, then the operator views


def test_the_cli_answers_every_saved_query_and_table_like_python(stopped: Path, tmp_path: Path) -> None:
    init = views_file(stopped, tmp_path)
    questions = [(name, sql, values) for name, sql, values in saved_questions()]
    questions += [(sql, sql, {}) for sql in AGGREGATES]
    script = []
    for index, (_, sql, values) in enumerate(questions):
        out = literal(str(tmp_path / f"answer-{index}.parquet"))
        script.append(f"{with_variables(f'COPY ({sql}) TO {out} (FORMAT parquet)', values)};")
    duckdb_cli(stopped, "\n".join(script), init)
    expected = python_answers(stopped)
    reader = duckdb.connect()
    for index, (name, _, _) in enumerate(questions):
        got = reader.execute(f"SELECT * FROM '{tmp_path / f'answer-{index}.parquet'}'").fetchall()
        assert same(sorted(got, key=repr), sorted(expected[name], key=repr)), name
    assert sum(len(rows) for rows in expected.values()) > 10_000  # whole tables, live and archived


def test_the_cli_runs_the_saved_sql_verbatim_with_prepare_and_execute(stopped: Path, tmp_path: Path) -> None:
    init = views_file(stopped, tmp_path)
    questions = saved_questions()
    script = [".mode csv"]
    for index, (_, sql, values) in enumerate(questions):
        arguments = ", ".join(f'"{k}" := {literal(v) if isinstance(v, str) else v}' for k, v in values.items())
        script += [
            f"PREPARE q{index} AS {sql};",
            f".output {tmp_path / f'answer-{index}.csv'}",
            f"EXECUTE q{index}({arguments});",
            ".output",
        ]
    duckdb_cli(stopped, "\n".join(script), init)
    expected = python_answers(stopped)
    for index, (name, _, _) in enumerate(questions):
        with (tmp_path / f"answer-{index}.csv").open() as answer:
            _header, *rows = list(csv.reader(answer))
        assert len(rows) == len(expected[name]), name
        for got, want in zip(rows, expected[name], strict=True):
            assert [g for g, w in zip(got, want, strict=True) if isinstance(w, str)] == [
                w for w in want if isinstance(w, str)
            ], name


def test_the_cli_reads_the_archive_alone_with_hive_partitioning(stopped: Path, tmp_path: Path) -> None:
    root = archive_root(stopped, None)
    out = tmp_path / "days.parquet"
    duckdb_cli(
        stopped,
        f"COPY (SELECT day, count(*) AS n FROM read_parquet({literal(str(root / 'gpu_samples' / '*/*.parquet'))}, "
        f"hive_partitioning = true) GROUP BY day) TO {literal(str(out))} (FORMAT parquet);",
    )
    con = open_database(stopped, read_only=True)
    try:
        logged = con.execute(
            "SELECT day, sum(row_count) FROM archive_log WHERE table_name = 'gpu_samples' GROUP BY day ORDER BY day"
        ).fetchall()
    finally:
        con.close()
    days = duckdb.connect().execute(f"SELECT day, n FROM '{out}' ORDER BY day").fetchall()
    assert days == logged
    assert len(days) == 3


WRITE_THEN_WAIT = """
import sys, time
from pathlib import Path
from storage.database import open_database

con = open_database(Path(sys.argv[1]), sandbox=[Path(sys.argv[2])])
con.execute("INSERT INTO rack_frames SELECT * REPLACE (frame_seq + 100000 AS frame_seq) FROM rack_frames")
print("stored", flush=True)
time.sleep(60)
"""


def test_the_cli_opens_a_killed_daemons_files_with_their_wal(stopped: Path, tmp_path: Path) -> None:
    db = Path(shutil.copy(stopped, tmp_path / "orbitwatch.duckdb"))  # its archive_log lists stopped's files
    archive_root(db, None).mkdir()
    with subprocess.Popen(
        [sys.executable, "-c", WRITE_THEN_WAIT, str(db), str(archive_root(db, None))],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    ) as daemon:
        try:
            assert daemon.stdout is not None
            assert daemon.stdout.readline() == "stored\n"
        finally:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=30)
    assert db.with_name(db.name + ".wal").stat().st_size > 0  # committed, never checkpointed
    init = views_file(stopped, tmp_path)  # the same archive files, listed by the stopped history's log
    out = tmp_path / "count.parquet"
    duckdb_cli(db, f"COPY (SELECT count(*) AS n FROM rack_frames) TO {literal(str(out))} (FORMAT parquet);", init)
    frames = duckdb.connect().execute(f"SELECT n FROM '{out}'").fetchall()[0][0]
    con = open_database(db, read_only=True)
    try:
        live = con.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0]
        attach_archive(con)
        assert con.execute("SELECT count(*) FROM rack_frames").fetchall() == [(frames,)]
    finally:
        con.close()
    assert frames > live  # the WAL's rows and the archive's
