"""DuckDB's threads follow the daemon's load (``orbitwatch.load_threads``), on a real DuckDB file."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from orbitwatch.load_threads import LoadThreads
from storage.database import open_database


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def threads_of(con: duckdb.DuckDBPyConnection) -> int:
    (row,) = con.execute("SELECT current_setting('threads')").fetchall()
    return int(row[0])


def test_all_threads_until_a_backlog_one_on_it_all_again_once_calm_for_the_settle_time(tmp_path: Path) -> None:
    con = open_database(tmp_path / "h.duckdb", threads=2)
    clock = Clock()
    load = LoadThreads(con, busy=1, settle_s=10.0, clock=clock)
    assert load.threads == 2  # the threads it was opened with, until a batch is full
    load.observe(False)
    assert threads_of(con) == 2
    load.observe(True)
    assert threads_of(con) == 1
    clock.now = 1.0
    load.observe(False)  # the first calm poll starts the settle time
    clock.now = 10.9
    load.observe(False)
    assert threads_of(con) == 1
    assert load.threads == 1
    clock.now = 11.0
    load.observe(False)
    assert threads_of(con) == 2
    assert load.threads == 2
    load.observe(True)  # a full batch: back to one at once
    assert threads_of(con) == 1
    clock.now = 15.0
    load.observe(False)
    clock.now = 24.0
    load.observe(True)  # a pause in the backlog shorter than the settle time does not raise them
    clock.now = 30.0
    load.observe(False)
    assert threads_of(con) == 1
    load.close()
    con.close()


def test_queries_running_while_the_threads_change_answer_in_full(tmp_path: Path) -> None:
    con = open_database(tmp_path / "h.duckdb", threads=2)
    con.execute("CREATE TABLE t AS SELECT range AS i, range % 97 AS k FROM range(2000000)")
    expected = con.execute("SELECT k, sum(i), count(*) FROM t GROUP BY k ORDER BY k").fetchall()
    clock = Clock()
    load = LoadThreads(con, busy=1, settle_s=0.0, clock=clock)
    cursor = con.cursor()
    answers: list[object] = []
    stop = threading.Event()

    def query() -> None:
        while not stop.is_set():
            answers.append(cursor.execute("SELECT k, sum(i), count(*) FROM t GROUP BY k ORDER BY k").fetchall())

    worker = threading.Thread(target=query)
    worker.start()
    changes = 0
    try:
        while len(answers) < 5:  # the threads change again and again while each answer is being computed
            load.observe(True)
            load.observe(False)
            changes += 2
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert changes > 10
    assert all(answer == expected for answer in answers)
    cursor.close()
    load.close()
    con.close()
