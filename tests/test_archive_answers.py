"""After retention moves old days to the Parquet archive, the same queries return the same answers.

A four-day history of two racks is stored through the real writer with derived tables; every saved query
(with its defaults, and with a span reaching the archived days) and aggregate or whole-table SQL over the
tables and operator views are answered before retention, then after it with ``attach_archive``, and, for
two shards (one rack each), through ``open_shards``. Floats from sums compare to 1e-9 (a sum's rounding
depends on its order); everything else compares exactly.
"""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from storage.archive import archive_version, attach_archive
from storage.database import open_database
from storage.retention import ARCHIVED_TABLES, RetentionJob, archive_root
from storage.saved_queries import SAVED_QUERIES, bind
from storage.shards import open_shards
from tests.helpers.frames import encode_message, gpu_sample, rack_frame
from tests.test_derived import Store

START = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
RACKS = ("sat-0001/rack-1", "sat-0002/rack-1")
RAW_DAYS, ROLLUP_DAYS = 1, 2  # newest day 2026-03-05: raw days 03-01..03-03 and rollups 03-01..03-02 move


def build_history(path: Path, racks: tuple[str, ...] = RACKS, days: float = 4, step_s: int = 120) -> Path:
    """``racks`` with two GPUs, a frame every ``step_s`` from START for ``days``, stored as the daemon does:
    gpu 0 critically hot one hour in seven, ECC counters rising, the tenant changing daily, a gap in the
    second rack, Kafka timestamps 30 s after each batch's newest frame. The file is closed."""
    store = Store(path)
    frames: list[tuple[datetime, bytes]] = []
    for i in range(int(days * 86400 / step_s)):
        at = START + timedelta(seconds=step_s * i)
        for r, rack in enumerate(racks):
            if rack == RACKS[1] and 100 <= i < 105:
                continue  # frames never received: an open gap
            gpus = [
                gpu_sample(
                    0,
                    g,
                    temp_c=91.5 + r if g == 0 and (i // 30) % 7 == 3 else 60.0 + g + r,
                    ecc_sbe=i // (40 + 10 * g),
                    ecc_dbe=i // 900 if r == 1 else 0,
                    xid=None,
                    throttle_reasons=0,
                    tenant=f"tenant-{(i // 720 + g) % 3}",
                )
                for g in range(2)
            ]
            frames.append((at, encode_message(rack_frame(rack_id=rack, frame_seq=i, sampled_at=at, gpus=gpus), 2)))
    batch = 360 * len(racks)
    for first in range(0, len(frames), batch):
        chunk = frames[first : first + batch]
        store.store([m for _, m in chunk], received_ms=int((chunk[-1][0] + timedelta(seconds=30)).timestamp() * 1000))
    store.con.close()
    return path


def retain(path: Path, raw_days: int = RAW_DAYS, rollup_days: int = ROLLUP_DAYS) -> None:
    """Run retention once on the closed file ``path``, sandboxed to its archive as the daemon is."""
    root = archive_root(path, None)
    root.mkdir(exist_ok=True)
    con = open_database(path, sandbox=[root])
    try:
        report = RetentionJob(con.cursor(), root, raw_days, rollup_days).run_once()
        assert report.parts
        assert not report.deferred
    finally:
        con.close()


def saved_questions() -> list[tuple[str, str, dict[str, int | float | str]]]:
    """Every saved query with its defaults and with a span reaching back over the whole history."""
    questions = []
    for name, query in SAVED_QUERIES.items():
        for given in ({}, {"hours": "1000"} if "hours" in query.parameters else {}):
            racks = RACKS if "rack" in query.parameters else ("",)
            for rack in racks:
                values = bind(query, {**given, **({"rack": rack} if rack else {})})
                questions.append((f"{name} {values}", query.sql, values))
    return questions


AGGREGATES = (
    "SELECT count(*), count(DISTINCT rack_id), min(sampled_at), max(sampled_at), sum(frame_seq) FROM rack_frames",
    "SELECT rack_id, node, gpu, count(*), max(temp_c), sum(ecc_sbe), min(sampled_at) FROM gpu_samples GROUP BY ALL",
    "SELECT * FROM rack_rollups_1h",
    "SELECT * FROM tenant_usage_hourly",
    "SELECT * FROM fleet_utilization_1m",
    "SELECT state, count(*) FROM node_health_1m GROUP BY ALL",
    "SELECT rack_id, state, count(*), min(window_start), max(computed_at) FROM rack_health_history GROUP BY ALL",
    "SELECT * FROM telemetry_gaps",
    "SELECT rack_id, state, last_known_state, last_window_start FROM fleet_health_now",
    "SELECT * FROM gpu_rollups_1m",
    "SELECT * FROM rack_rollups_1m",
    *(f"SELECT * FROM {t.name}" for t in ARCHIVED_TABLES),
)


def answers(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every question's rows, sorted: an ORDER BY leaves ties in any order (every LIMIT here exceeds the
    rows, so ties never change which rows are listed)."""
    result = {name: con.execute(sql, values).fetchall() for name, sql, values in saved_questions()}
    result |= {sql: con.execute(sql).fetchall() for sql in AGGREGATES}
    return {question: sorted(rows, key=repr) for question, rows in result.items()}


def same(left: Any, right: Any) -> bool:
    """Equal, floats to 1e-9 relative."""
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=1e-9)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def assert_same_answers(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> None:
    assert before.keys() == after.keys()
    for question, rows in before.items():
        assert same(rows, after[question]), question


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built once: both racks in one file, and each rack in a shard of its own (copy before changing)."""
    base = tmp_path_factory.mktemp("histories")
    return {
        "fleet": build_history(base / "fleet.duckdb"),
        "shard-0": build_history(base / "shard-0.duckdb", RACKS[:1]),
        "shard-1": build_history(base / "shard-1.duckdb", RACKS[1:]),
    }


def copy_of(histories: dict[str, Path], name: str, directory: Path) -> Path:
    """A private copy of a built history (retention changes the file)."""
    return Path(shutil.copy(histories[name], directory / f"{name}.duckdb"))


@pytest.fixture
def fleet(histories: dict[str, Path], tmp_path: Path) -> Path:
    return copy_of(histories, "fleet", tmp_path)


def live_counts(path: Path) -> dict[str, int]:
    con = open_database(path, read_only=True)
    try:
        return {t.name: con.execute(f"SELECT count(*) FROM {t.name}").fetchall()[0][0] for t in ARCHIVED_TABLES}
    finally:
        con.close()


def test_queries_answer_the_same_after_retention_moved_days_to_the_archive(fleet: Path) -> None:
    con = open_database(fleet, read_only=True)
    before = answers(con)
    con.close()
    live_before = live_counts(fleet)
    retain(fleet)
    live_after = live_counts(fleet)
    assert all(live_after[t] < live_before[t] for t in live_before), (live_before, live_after)
    con = open_database(fleet, read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT DISTINCT table_name FROM archive_log").fetchall()}
        assert tables == {t.name for t in ARCHIVED_TABLES}
        assert attach_archive(con) == archive_version(con) != (0, 0)
        after = answers(con)
    finally:
        con.close()
    assert_same_answers(before, after)
    wide = [name for name in before if "'hours': 1000" in name and "telemetry" not in name]
    assert wide
    assert all(before[name] for name in wide)


def test_two_shards_with_archives_answer_like_the_shards_did(histories: dict[str, Path], tmp_path: Path) -> None:
    shards = [copy_of(histories, name, tmp_path) for name in ("shard-0", "shard-1")]
    con = open_shards(shards)
    before = answers(con)
    con.close()
    for shard in shards:
        retain(shard)
    con = open_shards(shards)
    try:
        after = answers(con)
        live = con.execute("SELECT count(*) FROM shard0.rack_frames").fetchall()[0][0]
        everywhere = con.execute("SELECT count(*) FROM rack_frames WHERE rack_id = ?", [RACKS[0]]).fetchall()[0][0]
        assert live < everywhere  # shard 0's rows are partly in its archive, and still all counted
    finally:
        con.close()
    assert_same_answers(before, after)
    fleet_minutes = before["SELECT * FROM fleet_utilization_1m"]
    assert any(row[1] == 2 for row in fleet_minutes)  # racks_reporting: minutes computed across both shards


def test_union_views_keep_the_live_types_and_resolve_before_main(fleet: Path) -> None:
    retain(fleet)
    con = open_database(fleet, read_only=True)
    try:
        catalog = con.execute("SELECT current_database()").fetchall()[0][0]
        describe = "SELECT column_name, column_type FROM (DESCRIBE {})"
        live_types = {t.name: con.execute(describe.format(t.name)).fetchall() for t in ARCHIVED_TABLES}
        live_rows = con.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0]
        attach_archive(con)
        for t in ARCHIVED_TABLES:
            assert con.execute(describe.format(t.name)).fetchall() == live_types[t.name]
        views = "SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
        temp = {r[0] for r in con.execute(views).fetchall()}
        assert {t.name for t in ARCHIVED_TABLES} | {"gpu_rollups_1m", "tenant_usage_hourly"} <= temp
        union = con.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0]
        qualified = con.execute(f'SELECT count(*) FROM "{catalog}".main.rack_frames').fetchall()[0][0]
        assert qualified == live_rows < union
        again = attach_archive(con)  # idempotent
        assert again == archive_version(con)
        assert con.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0] == union
    finally:
        con.close()


def test_attach_does_nothing_without_an_archive(fleet: Path) -> None:
    con = open_database(fleet, read_only=True)
    try:
        assert attach_archive(con) == (0, 0)
        temp = "SELECT count(*) FROM duckdb_views() WHERE temporary AND NOT internal"
        assert con.execute(temp).fetchall() == [(0,)]
    finally:
        con.close()


def test_a_reader_in_its_transaction_sees_each_row_once_while_retention_commits(fleet: Path) -> None:
    root = archive_root(fleet, None)
    root.mkdir()
    con = open_database(fleet, sandbox=[root])
    try:
        total = con.execute("SELECT count(*) FROM gpu_samples").fetchall()[0][0]
        reader = con.cursor()
        reader.execute("BEGIN TRANSACTION")
        cached = attach_archive(reader)
        assert cached == (0, 0)  # nothing archived yet: plain tables
        report = RetentionJob(con.cursor(), root, RAW_DAYS, ROLLUP_DAYS).run_once()
        assert report.rows > 0
        assert archive_version(reader) == cached  # the reader's snapshot predates the move
        assert reader.execute("SELECT count(*) FROM gpu_samples").fetchall()[0][0] == total
        reader.execute("COMMIT")
        reader.execute("BEGIN TRANSACTION")
        assert archive_version(reader) != cached  # now the reader rebuilds its views
        attach_archive(reader)
        assert reader.execute("SELECT count(*) FROM gpu_samples").fetchall()[0][0] == total
        assert reader.execute("SELECT count(*) FROM main.archive_log").fetchall()[0][0] == len(report.parts)
        reader.execute("COMMIT")
    finally:
        con.close()


def test_a_copy_with_its_archive_beside_it_answers_like_the_original(fleet: Path, tmp_path: Path) -> None:
    """``orbitwatch query --db COPY`` reads the copy's ``<db>.archive``; a missing archive is a clear error."""
    from click.testing import CliRunner

    from orbitwatch.cli import main

    sql = "SELECT count(*) AS n, sum(temp_c) AS t FROM gpu_samples"
    con = open_database(fleet, read_only=True)
    expected = con.execute(sql).fetchall()
    con.close()
    retain(fleet)
    moved = tmp_path / "restored" / "copy.duckdb"
    moved.parent.mkdir()
    shutil.copy(fleet, moved)
    shutil.copytree(archive_root(fleet, None), moved.with_name("copy.duckdb.archive"))
    shutil.rmtree(archive_root(fleet, None))  # the original place is gone: the copy must use its own
    result = CliRunner().invoke(main, ["query", "--db", str(moved), "--format", "csv", sql])
    assert result.exit_code == 0, result.output
    n, t = result.output.splitlines()[1].split(",")
    assert int(n) == expected[0][0]
    assert math.isclose(float(t), expected[0][1], rel_tol=1e-9)
    shutil.rmtree(moved.with_name("copy.duckdb.archive"))
    missing = CliRunner().invoke(main, ["query", "--db", str(moved), sql])
    assert missing.exit_code == 1
    assert "Parquet archive" in missing.output
    assert "Traceback" not in missing.output


def test_tenant_usage_reads_only_its_span_yet_answers_like_the_hourly_view(fleet: Path) -> None:
    """The saved tenant-usage filters minutes, not the view's computed hours: same rows for every span."""
    by_view = """SELECT tenant, CASE WHEN $tenant = '' THEN NULL ELSE hour END AS hour,
        round(sum(gpu_hours), 2) AS gpu_hours, sum(gpu_seconds) AS gpu_seconds, max(racks) AS racks
        FROM tenant_usage_hourly
        WHERE hour > (SELECT max(window_start) FROM rack_windows_1m) - to_hours($hours::BIGINT)
            AND ($tenant = '' OR tenant = $tenant)
        GROUP BY ALL ORDER BY gpu_hours DESC"""
    query = SAVED_QUERIES["tenant-usage"]
    con = open_database(fleet, read_only=True)
    try:
        for hours in ("1", "5", "24", "30", "1000"):
            for tenant in ("", "tenant-1"):
                values = bind(query, {"hours": hours, "tenant": tenant})
                expected = sorted(con.execute(by_view, values).fetchall(), key=repr)
                assert expected
                assert same(sorted(con.execute(query.sql, values).fetchall(), key=repr), expected), values
    finally:
        con.close()
