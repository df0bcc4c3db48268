"""Several shards queried together: tables and views span all shards, fleet-wide views aggregate across them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from storage.errors import DatabaseLockedError
from storage.shards import open_shards
from tests.helpers.frames import DEFAULT_SAMPLED_AT, encode_message, gpu_sample, rack_frame
from tests.test_cli import orbitwatch
from tests.test_derived import Store


def shard(path: Path, rack: str, temp_c: float) -> Path:
    """A shard holding two minutes of one rack with one GPU (tenant acme, 120 GPU-seconds)."""
    store = Store(path)
    gpu: dict[str, Any] = {"temp_c": temp_c, "tenant": "acme", "xid": None, "throttle_reasons": 0}
    store.store(
        [
            encode_message(
                rack_frame(
                    rack_id=rack,
                    frame_seq=s,
                    sampled_at=DEFAULT_SAMPLED_AT + timedelta(seconds=s),
                    gpus=[gpu_sample(0, 0, **gpu)],
                ),
                2,
            )
            for s in range(120)
        ]
    )
    store.con.close()
    return path


@pytest.fixture
def shards(tmp_path: Path) -> list[Path]:
    return [
        shard(tmp_path / "shard-0.duckdb", "sat-0001/rack-1", 60.0),
        shard(tmp_path / "shard-1.duckdb", "sat-0002/rack-1", 91.5),
    ]


def test_tables_and_views_span_all_shards(shards: list[Path]) -> None:
    con = open_shards(shards)
    racks = con.execute("SELECT rack_id, max(temp_max) FROM gpu_rollups_1m GROUP BY ALL ORDER BY 1").fetchall()
    assert racks == [("sat-0001/rack-1", 60.0), ("sat-0002/rack-1", 91.5)]
    assert con.execute("SELECT count(*) FROM rack_frames").fetchall() == [(240,)]
    fleet = con.execute("SELECT racks_reporting, gpus_reporting, gpus_healthy FROM fleet_utilization_1m").fetchall()
    assert fleet == [(2, 2, 1), (2, 2, 1)]  # one row per minute across shards, not one per shard
    usage = con.execute("SELECT tenant, gpu_seconds, racks, gpus FROM tenant_usage_hourly").fetchall()
    assert usage == [("acme", 240, 2, 2)]
    con.close()


def test_cli_queries_shards_together_and_says_which_one_is_held(shards: list[Path]) -> None:
    result = orbitwatch("query", "--db", str(shards[0]), "--db", str(shards[1]), "--saved", "hottest-racks")
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("sat-0002/rack-1") < result.stdout.index("sat-0001/rack-1")  # hottest first
    held = duckdb.connect(str(shards[1]))  # as its daemon would
    try:
        refused = orbitwatch("query", "--db", str(shards[0]), "--db", str(shards[1]), "SELECT 1")
        assert refused.returncode == 1
        assert f"{shards[1]} is held by another process" in refused.stderr
        with pytest.raises(DatabaseLockedError):
            open_shards(shards)
    finally:
        held.close()
