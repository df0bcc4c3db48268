"""Write errors name the file and, when a disk filled, how full it is (``storage.database``)."""

from __future__ import annotations

import errno
from pathlib import Path

import duckdb

from storage.database import database_path, disk_full_detail, open_database


def test_a_full_disk_is_described_with_the_file_and_its_filesystems_free_space(tmp_path: Path) -> None:
    target = tmp_path / "archive" / "rack_frames" / "day=2026-01-01" / "part.parquet"  # not made yet
    detail = disk_full_detail(target, OSError(errno.ENOSPC, "No space left on device"))
    assert detail.startswith(f"; the filesystem of {target} has ")
    assert " MiB free of " in detail
    # DuckDB reports a full disk as an IOException whose message carries the OS's text
    as_duckdb = duckdb.IOException('Could not write file "x.wal": No space left on device')
    assert disk_full_detail(target, as_duckdb) == detail


def test_other_failures_get_no_disk_detail(tmp_path: Path) -> None:
    assert disk_full_detail(tmp_path / "f", OSError(errno.EIO, "Input/output error")) == ""
    assert disk_full_detail(None, OSError(errno.ENOSPC, "No space left on device")) == ""


def test_the_database_path_is_read_from_the_connection(tmp_path: Path) -> None:
    con = open_database(tmp_path / "h.duckdb")
    try:
        assert database_path(con) == tmp_path / "h.duckdb"
    finally:
        con.close()
