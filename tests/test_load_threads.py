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


def test_all_threads_until_messages_come_one_while_they_do_all_again_once_idle_for_the_settle_time(
    tmp_path: Path,
) -> None:
    con = open_database(tmp_path / "h.duckdb", threads=2)
    clock = Clock()
    load = LoadThreads(con, busy=1, settle_s=10.0, clock=clock)
    assert load.threads == 2  # the threads it was opened with, until messages come
    load.observe(0)
    assert threads_of(con) == 2
    load.observe(120)
    assert threads_of(con) == 1
    clock.now = 1.0
    load.observe(0)  # the first empty poll starts the settle time
    clock.now = 10.9
    load.observe(0)
    assert threads_of(con) == 1
    assert load.threads == 1
    clock.now = 11.0
    load.observe(0)
    assert threads_of(con) == 2
    assert load.threads == 2
    load.observe(1)  # a message: back to one at once
    assert threads_of(con) == 1
    clock.now = 15.0
    load.observe(0)
    clock.now = 24.0
    load.observe(4000)  # a pause shorter than the settle time does not raise them
    clock.now = 30.0
    load.observe(0)
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
            load.observe(1)
            load.observe(0)
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
