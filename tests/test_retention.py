"""Retention on a real history file, sandboxed as the daemon runs it: whole UTC days older than the cutoff
(counted back from the newest data) move to ``<root>/<table>/day=YYYY-MM-DD/`` and nothing is lost or
doubled, whatever fails and whatever the writer commits meanwhile.

The history: one rack, a frame every 30 minutes from 2026-03-01 20:00 to 2026-03-11 07:30 (UTC). With
raw_days=3 and rollup_days=5 raw days before 2026-03-08 and rollups before 2026-03-06 move.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from ingest.codec import FrameDecoder
from orbitwatch import assemble
from orbitwatch.archive_cmd import archive
from processing.rows import prepare_batch
from storage import retention
from storage.archive import archive_version, attach_archive
from storage.database import open_database
from storage.derived import DerivedTables
from storage.errors import ArchiveError
from storage.retention import ARCHIVED_TABLES, RetentionJob, archive_root, raw_archived_before
from storage.writer import HistoryWriter, PartitionOutcomes
from tests.helpers.frames import encode_message, rack_frame, raw_batch, registry
from tests.test_archive_answers import RACKS, build_history

RAW_DAYS, ROLLUP_DAYS = 3, 5
RAW_CUTOFF, ROLLUP_CUTOFF = date(2026, 3, 8), date(2026, 3, 6)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_history(tmp_path_factory.mktemp("built") / "history.duckdb", RACKS[:1], days=9.5, step_s=1800)


@pytest.fixture
def db(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(built, tmp_path / "history.duckdb"))


@pytest.fixture
def con(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The history opened as the daemon opens it: writable, file access confined to the archive root."""
    root = archive_root(db, None)
    root.mkdir()
    connection = open_database(db, sandbox=[root])
    yield connection
    connection.close()


def job(con: duckdb.DuckDBPyConnection, db: Path) -> RetentionJob:
    return RetentionJob(con.cursor(), archive_root(db, None), RAW_DAYS, ROLLUP_DAYS)


def by_day(con: duckdb.DuckDBPyConnection, table: str, column: str) -> dict[date, int]:
    """Live rows per UTC day."""
    rows = con.execute(
        f"SELECT floor(epoch({column}) / 86400)::BIGINT AS d, count(*) FROM {table} GROUP BY d"
    ).fetchall()
    return {date(1970, 1, 1) + timedelta(days=int(d)): int(n) for d, n in rows}


def everything(con: duckdb.DuckDBPyConnection) -> dict[str, dict[date, int]]:
    return {t.name: by_day(con, t.name, t.time_column) for t in ARCHIVED_TABLES}


def logged(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT table_name, day, path, row_count, file_bytes, min_time, max_time FROM archive_log ORDER BY id"
    ).fetchall()


def parquet_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_whole_days_before_the_cutoff_move_to_day_partitions(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    before = everything(con)
    report = job(con, db).run_once()
    assert report.newest == datetime(2026, 3, 11, 7, 30, tzinfo=UTC)  # the data's clock, not the wall clock
    assert (report.raw_cutoff, report.rollup_cutoff) == (
        datetime(2026, 3, 8, tzinfo=UTC),
        datetime(2026, 3, 6, tzinfo=UTC),
    )
    after = everything(con)
    root = archive_root(db, None)
    archived: dict[str, dict[date, int]] = {}
    for table, day, path, rows, size, first, last in logged(con):
        file = Path(path)
        assert re.fullmatch(r"part-history-[0-9a-f]{32}\.parquet", file.name)
        assert file.parent == root / table / f"day={day.isoformat()}"
        assert file.stat().st_size == size
        in_file = con.execute(f"SELECT count(*), min({_column(table)}), max({_column(table)}) FROM '{file}'")
        assert in_file.fetchall() == [(rows, first, last)]
        assert datetime.combine(day, datetime.min.time(), UTC) <= first <= last < _midnight(day + timedelta(1))
        archived.setdefault(table, {})[day] = rows
    for t in ARCHIVED_TABLES:
        cutoff = RAW_CUTOFF if t.raw else ROLLUP_CUTOFF
        assert archived.get(t.name, {}) == {d: n for d, n in before[t.name].items() if d < cutoff}, t.name
        assert after[t.name] == {d: n for d, n in before[t.name].items() if d >= cutoff}, t.name
    assert len(archived["rack_frames"]) == 7
    assert len(archived["gpu_windows_1m"]) == 5
    assert date(2026, 3, 11) in after["rack_frames"]
    assert report.rows == sum(sum(days.values()) for days in archived.values())
    assert raw_archived_before(con) == datetime(2026, 3, 8, tzinfo=UTC)


def _column(table: str) -> str:
    return next(t.time_column for t in ARCHIVED_TABLES if t.name == table)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def test_a_second_run_moves_nothing(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    retention_job = job(con, db)
    assert raw_archived_before(con) is None
    first = retention_job.run_once()
    files, version = parquet_files(retention_job.root), archive_version(con)
    second = retention_job.run_once()
    assert first.parts
    assert second.parts == ()
    assert second.orphans_removed == ()
    assert parquet_files(retention_job.root) == files
    assert archive_version(con) == version == (len(first.parts), len(first.parts))


def test_rows_the_writer_commits_meanwhile_stay_live_and_move_at_the_next_run(
    con: duckdb.DuckDBPyConnection, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = date(2026, 3, 2)
    span = [_midnight(day), _midnight(day + timedelta(1))]
    total = con.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0]
    writer = con.cursor()
    written: list[int] = []
    fsync = retention._fsync

    def writer_commits_after_the_copy(path: Path) -> None:
        fsync(path)
        if path.name.endswith(".tmp") and f"rack_frames/day={day}" in str(path) and not written:
            writer.execute(  # the writer's own transaction, committed while retention's is open
                "INSERT INTO rack_frames SELECT * REPLACE (frame_seq + 100000 AS frame_seq) FROM rack_frames "
                "WHERE sampled_at >= ? AND sampled_at < ?",
                span,
            )
            written.append(
                writer.execute("SELECT count(*) FROM rack_frames WHERE frame_seq >= 100000").fetchall()[0][0]
            )

    monkeypatch.setattr(retention, "_fsync", writer_commits_after_the_copy)
    first = job(con, db).run_once()
    assert written == [48]
    part = next(p for p in first.parts if (p.table, p.day) == ("rack_frames", day))
    assert part.rows == 48  # what the snapshot saw; the writer's rows were not deleted unarchived
    assert con.execute("SELECT count(*) FROM rack_frames WHERE sampled_at < ?", [span[1]]).fetchall() == [(48,)]
    second = job(con, db).run_once()
    assert [(p.table, p.day, p.rows) for p in second.parts] == [("rack_frames", day, 48)]
    assert len(list(part.path.parent.glob("*.parquet"))) == 2  # a second part of the same day
    reader = con.cursor()
    attach_archive(reader)
    keys = reader.execute("SELECT count(*), count(DISTINCT (boot_epoch, frame_seq)) FROM rack_frames").fetchall()
    assert keys == [(total + 48, total + 48)]  # every frame once: none lost, none doubled


def test_a_conflict_with_the_writer_defers_that_table_to_the_next_run(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    writer = con.cursor()
    writer.execute("BEGIN TRANSACTION")  # a late frame's recompute replacing the oldest minute, not committed
    writer.execute("DELETE FROM rack_windows_1m WHERE window_start = (SELECT min(window_start) FROM rack_windows_1m)")
    before = by_day(con, "rack_windows_1m", "window_start")
    retention_job = job(con, db)
    report = retention_job.run_once()
    assert [(d.table, d.day) for d in report.deferred] == [("rack_windows_1m", date(2026, 3, 1))]
    assert "Conflict" in report.deferred[0].reason
    moved = {"rack_frames", "gpu_samples", "gpu_windows_1m", "tenant_minutes", "gpu_ecc_hours", "tenant_hours"}
    assert {p.table for p in report.parts} == moved
    assert not list((retention_job.root / "rack_windows_1m").rglob("*.parquet*"))
    assert by_day(con, "rack_windows_1m", "window_start") == before
    writer.execute("ROLLBACK")
    again = retention_job.run_once()
    assert {(p.table, p.day) for p in again.parts} == {
        ("rack_windows_1m", date(2026, 3, 1) + timedelta(days=d)) for d in range(5)
    }


def test_a_failure_rolls_back_and_removes_the_file(
    con: duckdb.DuckDBPyConnection, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = everything(con)

    def disk_full(path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(retention, "_fsync", disk_full)
    retention_job = job(con, db)
    with pytest.raises(
        ArchiveError,
        match=r"archiving rack_frames 2026-03-01 to .*/day=2026-03-01/part-.*\.parquet failed, rolled back"
        r".*No space left.*MiB free of",
    ):
        retention_job.run_once()
    assert everything(con) == before
    assert logged(con) == []
    assert parquet_files(retention_job.root) == set()


CRASH = """
import os, sys
from pathlib import Path
from storage import retention
from storage.database import open_database

def killed_after_the_rename(path):
    if path.is_dir():  # the directory is flushed right after the rename, before DELETE and COMMIT
        os._exit(3)

retention._fsync = killed_after_the_rename
db, root = Path(sys.argv[1]), Path(sys.argv[2])
retention.RetentionJob(open_database(db, sandbox=[root]), root, 3, 5).run_once()
"""


def test_a_crash_between_rename_and_commit_leaves_an_orphan_the_next_run_removes(db: Path) -> None:
    root = archive_root(db, None)
    root.mkdir()
    con = open_database(db, read_only=True)
    before = everything(con)
    con.close()
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(db), str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == 3, crashed.stderr
    (orphan,) = parquet_files(root)
    assert orphan.parent == root / "rack_frames" / "day=2026-03-01"
    assert orphan.suffix == ".parquet"
    con = open_database(db, sandbox=[root])
    try:
        assert everything(con) == before
        assert logged(con) == []
        report = job(con, db).run_once()
        assert report.orphans_removed == (orphan,)
        assert not orphan.exists()
        assert parquet_files(root) == {Path(row[2]) for row in logged(con)}
        attach_archive(reader := con.cursor())
        assert everything(reader) == before  # every row once, live or archived
    finally:
        con.close()


def test_only_this_databases_orphans_are_removed(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    root = archive_root(db, None)
    day = root / "rack_frames" / "day=2026-03-01"
    day.mkdir(parents=True)
    ours_tmp = day / f"part-history-{'a' * 32}.parquet.tmp"
    ours = day / f"part-history-{'b' * 32}.parquet"
    other_shard = day / f"part-history-2-{'c' * 32}.parquet"  # a shard sharing the root
    for path in (ours_tmp, ours, other_shard):
        path.write_bytes(b"PAR1")
    removed = job(con, db).remove_orphans()
    assert sorted(removed) == sorted([ours_tmp, ours])
    assert other_shard.exists()


def test_the_sandbox_confines_the_job_to_its_root(con: duckdb.DuckDBPyConnection, db: Path, tmp_path: Path) -> None:
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'outside.parquet'}' (FORMAT parquet)")
    before = everything(con)
    outside = RetentionJob(con.cursor(), tmp_path / "elsewhere", RAW_DAYS, ROLLUP_DAYS)
    with pytest.raises(ArchiveError, match="rolled back"):
        outside.run_once()
    assert everything(con) == before
    assert not list((tmp_path / "elsewhere").rglob("*.parquet*"))


def test_an_empty_history_has_nothing_to_archive(tmp_path: Path) -> None:
    con = open_database(tmp_path / "empty.duckdb")
    try:
        report = RetentionJob(con, tmp_path / "archive", 1, 1).run_once()
        assert report.newest is None
        assert report.parts == ()
        assert report.rows == 0
    finally:
        con.close()


def test_archive_root_and_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert archive_root(Path("data/orbitwatch.duckdb"), None) == tmp_path / "data" / "orbitwatch.duckdb.archive"
    assert archive_root(Path("data/orbitwatch.duckdb"), Path("/srv/archive")) == Path("/srv/archive")
    con = duckdb.connect()
    with pytest.raises(ArchiveError, match="raw_days"):
        RetentionJob(con, tmp_path, 0, 5)
    with pytest.raises(ArchiveError, match="rollup_days"):
        RetentionJob(con, tmp_path, 7, 3)


def test_cli_runs_retention_and_reports_the_status(db: Path) -> None:
    runner = CliRunner()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITWATCH_")}
    run = runner.invoke(archive, ["run", "--db", str(db), "--raw-days", "3", "--rollup-days", "5"], env=env)
    assert run.exit_code == 0, run.output
    assert "moved 2,288 rows in 39 files" in run.stdout  # 7 days of 2 raw tables, 5 of 5 rollup tables
    assert "raw rows kept from 2026-03-08 00:00Z, rollups from 2026-03-06 00:00Z" in run.stdout
    status = runner.invoke(archive, ["status", "--db", str(db), "--format", "json"], env=env)
    assert status.exit_code == 0, status.output
    frames = next(r for r in json.loads(status.stdout) if r["table"] == "rack_frames")
    assert (frames["live_days"], frames["archived_days"], frames["archived_files"]) == (4, 7, 7)
    assert frames["live_rows"] + frames["archived_rows"] == 456
    table = runner.invoke(archive, ["status", "--db", str(db)], env=env)
    assert "rack_frames" in table.stdout
    assert "7 (2026-03-01..2026-03-07)" in table.stdout
    missing = runner.invoke(archive, ["status", "--db", str(db.with_name("nope.duckdb"))], env=env)
    assert missing.exit_code == 1
    assert "no history database" in missing.output


def test_the_daemons_fence_holds_both_cutoffs_back(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """With ``raw_fence`` before the cutoffs (a batch prepared below them is in flight), nothing at or after
    the fence moves, raw or rollup; lifting the fence lets the rest go."""
    retention_job = job(con, db)
    fence = _midnight(ROLLUP_CUTOFF - timedelta(days=1))
    retention_job.raw_fence = fence
    held = retention_job.run_once()
    assert held.parts
    assert all(_midnight(part.day) < fence for part in held.parts)
    assert (held.raw_cutoff, held.rollup_cutoff) == (fence, fence)
    retention_job.raw_fence = None
    rest = retention_job.run_once()
    assert {part.day for part in rest.parts} >= {ROLLUP_CUTOFF - timedelta(days=1)}


def test_late_frames_of_an_archived_day_are_stored_once_and_leave_its_minutes_alone(
    con: duckdb.DuckDBPyConnection, db: Path
) -> None:
    """A partition read late delivers frames of a day already archived: stored (never dead-lettered),
    deduplicated against the archive, counted exactly once, moved to the archive by the next run; the
    day's minutes, computed from all its rows before it was archived, stay as they were."""
    assert job(con, db).run_once().parts
    archived_before = raw_archived_before(con)
    assert archived_before == _midnight(RAW_CUTOFF)
    rack, day = RACKS[0], date(2026, 3, 2)
    (copy_seq,) = con.execute(  # a frame whose day is archived, as the archive holds it
        "SELECT frame_seq FROM read_parquet(?) LIMIT 1",
        [str(archive_root(db, None) / f"rack_frames/day={day}/*.parquet")],
    ).fetchall()[0]
    minutes_before = con.execute("SELECT * FROM gpu_windows_1m ORDER BY ALL").fetchall()
    total = con.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0]
    reader = con.cursor()
    attach_archive(reader)
    union_before = reader.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0]
    reader.close()
    frames = [
        rack_frame(rack_id=rack, frame_seq=copy_seq, sampled_at=_midnight(day) + timedelta(seconds=60 * copy_seq)),
        rack_frame(rack_id=rack, frame_seq=900_001, sampled_at=_midnight(day) + timedelta(hours=5, seconds=7)),
    ]
    received_ms = int(datetime(2026, 3, 11, 8, tzinfo=UTC).timestamp() * 1000)  # played back on the last day
    raw = raw_batch([encode_message(f, 2) for f in frames], first_offset=10_000, timestamps_ms=[received_ms] * 2)
    decoded = FrameDecoder(registry()).decode(raw)
    batch = assemble.to_store(raw, decoded, prepare_batch(decoded.frames), archived_before)
    stored = HistoryWriter(con, DerivedTables(con)).write(batch)

    assert (stored.frames_stored, stored.duplicates_dropped, stored.dead_letters) == (1, 1, 0)
    assert stored.by_partition == {0: PartitionOutcomes(1, 1, 0)}
    assert con.execute("SELECT count(*) FROM rack_frames").fetchall()[0][0] == total + 1
    assert con.execute("SELECT * FROM gpu_windows_1m ORDER BY ALL").fetchall() == minutes_before
    second = job(con, db).run_once()
    assert [(p.table, p.day, p.rows) for p in second.parts if p.table == "rack_frames"] == [("rack_frames", day, 1)]
    reader = con.cursor()
    attach_archive(reader)
    keys = reader.execute("SELECT count(*), count(DISTINCT (rack_id, boot_epoch, frame_seq)) FROM rack_frames")
    assert keys.fetchall() == [(union_before + 1, union_before + 1)]  # the late frame once, its copy not at all
