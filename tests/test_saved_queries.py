"""Saved queries on a history written by the real writer: answers checked by hand, bad parameters refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import QueryError
from storage.saved_queries import SAVED_QUERIES, run_saved
from tests.test_cli import orbitwatch
from tests.test_derived import Store, frame


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """Rack sat-0001/rack-1, one GPU: 60 C for a minute, then 91.5 C (critical) for a minute, with ECC errors."""
    history = Store(tmp_path / "history.duckdb")
    history.store([frame(s, temp_c=91.5 if 60 <= s < 120 else 60.0) for s in range(180)])
    return history


def test_every_saved_query_runs_with_its_defaults_and_answers(store: Store) -> None:
    hottest = run_saved(store.con, "hottest-racks", {})
    assert hottest.rows[0][:2] == ("sat-0001/rack-1", 91.5)
    ecc = run_saved(store.con, "rising-ecc", {})
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in ecc.rows] == [("sat-0001/rack-1", 0, 0, 0, 6)]  # 0 -> 3 -> 5 -> 6
    changes = run_saved(store.con, "rack-health-changes", {"rack": "sat-0001/rack-1"})
    assert [r[1] for r in changes.rows] == ["ok", "critical", "ok"]
    assert changes.rows[1][2] == ["node 0: gpu 0: gpu temp 91.5 C >= critical 90 C"]
    gaps = run_saved(store.con, "telemetry-gaps", {})
    assert gaps.rows == []
    usage = run_saved(store.con, "tenant-usage", {"tenant": "tenant-0"})
    assert [(r[0], r[3]) for r in usage.rows] == [("tenant-0", 180)]
    assert set(SAVED_QUERIES) == {
        "hottest-racks",
        "rising-ecc",
        "tenant-usage",
        "telemetry-gaps",
        "rack-health-changes",
    }


def test_parameters_are_typed_named_and_required(store: Store) -> None:
    with pytest.raises(QueryError, match="hours must be int, got 'six'"):
        run_saved(store.con, "hottest-racks", {"hours": "six"})
    with pytest.raises(QueryError, match="has no parameter rack_id"):
        run_saved(store.con, "hottest-racks", {"rack_id": "x"})
    with pytest.raises(QueryError, match="needs --param rack="):
        run_saved(store.con, "rack-health-changes", {})
    with pytest.raises(QueryError, match="no saved query 'nope'"):
        run_saved(store.con, "nope", {})
    quoted = run_saved(store.con, "rack-health-changes", {"rack": "x' OR '1'='1"})  # bound, not pasted
    assert quoted.rows == []


def test_cli_lists_and_runs_saved_queries(store: Store, tmp_path: Path) -> None:
    store.con.close()
    db = str(tmp_path / "history.duckdb")
    listed = orbitwatch("query", "--list-saved")
    assert listed.returncode == 0
    assert "hottest-racks: " in listed.stdout
    assert "--param hours=6, limit=10" in listed.stdout
    result = orbitwatch("query", "--db", db, "--saved", "hottest-racks", "--param", "hours=1", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert '"rack_id": "sat-0001/rack-1"' in result.stdout
    bad = orbitwatch("query", "--db", db, "--saved", "hottest-racks", "--param", "hours")
    assert bad.returncode == 2
    assert "is not key=value" in bad.stderr
