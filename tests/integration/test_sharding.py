"""Static shards (instance k of n owns partitions p % n == k) and idempotent replays of a time range."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from ingest.admin import create_topic
from simulator.config import SimulationConfig
from tests.integration.daemons import DaemonFactory, run_until_consumed
from tests.integration.fleet import scalar, send_fleet, stored_keys

pytestmark = pytest.mark.integration
# 12 racks x 10 minutes: each shard owns thousands of messages, so a kill after shard 1's first commit (of
# 100) lands mid-ingestion; a bigger fleet only costs CPU time (the suite runs on 2 cores).
FLEET = SimulationConfig(satellites=3, racks_per_satellite=4, duration_s=600, seed=8, duplicate_rate=0.03)


def _partitions(db: object) -> set[int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {int(p) for (p,) in con.execute("SELECT kafka_partition FROM kafka_offsets").fetchall()}


def test_three_shards_store_every_frame_once_and_survive_a_kill(bootstrap: str, daemon_factory: DaemonFactory) -> None:
    topic = f"sharded-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 12)
    shards = [
        daemon_factory(
            f"shard-{k}",
            kafka__topic=topic,
            kafka__shard_index=str(k),
            kafka__shard_count="3",
            daemon__max_batch_messages="100",
        )
        for k in range(3)
    ]
    truth = send_fleet(bootstrap, topic, FLEET)
    for shard in shards:
        shard.start()
    shards[1].wait_for_progress()
    shards[1].kill()
    killed_at = shards[1].messages_consumed()
    for shard in (shards[0], shards[2]):
        shard.kill()
    consumed = 0
    for shard in shards:
        run_until_consumed(shard, 1)
        consumed += shard.messages_consumed()
    assert consumed == truth.messages_sent
    assert 0 < killed_at < shards[1].messages_consumed(), "the kill did not land mid-ingestion"

    keys = stored_keys([s.db for s in shards])
    assert len(keys) == len(set(keys)), "a frame was stored by two shards"
    assert set(keys) == truth.delivered_ids()
    owned = [_partitions(s.db) for s in shards]
    assert all(p % 3 == k for k, partitions in enumerate(owned) for p in partitions)
    assert "shard 1 of 3 owns partitions [1, 4, 7, 10]" in shards[1].log_text()


def test_replay_restores_a_time_range_idempotently(bootstrap: str, topic: str, daemon_factory: DaemonFactory) -> None:
    truth = send_fleet(bootstrap, topic, FLEET)
    daemon = daemon_factory()
    run_until_consumed(daemon, truth.messages_sent)
    with duckdb.connect(str(daemon.db)) as con:
        first, last = con.execute("SELECT min(received_at), max(received_at) FROM rack_frames").fetchone() or (
            None,
            None,
        )
        assert isinstance(first, datetime)
        assert isinstance(last, datetime)
        cut_from, cut_to = first + (last - first) / 3, first + 2 * (last - first) / 3
        con.execute(
            "DELETE FROM gpu_samples WHERE (rack_id, boot_epoch, frame_seq) IN (SELECT rack_id, boot_epoch, frame_seq "
            "FROM rack_frames WHERE received_at >= ? AND received_at < ?)",
            [cut_from, cut_to],
        )
        lost = con.execute("DELETE FROM rack_frames WHERE received_at >= ? AND received_at < ?", [cut_from, cut_to])
        assert (lost.fetchone() or (0,))[0] > 0
        offsets_before = con.execute("SELECT * FROM kafka_offsets ORDER BY kafka_partition").fetchall()

    replay = [
        sys.executable,
        "-m",
        "orbitwatch.cli",
        "replay",
        "--idle",
        "3",
        "--from",
        cut_from.astimezone(UTC).isoformat(),
        "--to",
        (cut_to + timedelta(0)).astimezone(UTC).isoformat(),
    ]
    first_run = subprocess.run(replay, env=daemon.env, capture_output=True, text=True, timeout=120, check=False)
    assert first_run.returncode == 0, first_run.stderr[-2000:]
    assert set(stored_keys([daemon.db])) == truth.delivered_ids()
    assert scalar(daemon.db, "SELECT count(*) FROM gpu_samples") == 64 * len(truth.delivered_ids())

    second_run = subprocess.run(replay, env=daemon.env, capture_output=True, text=True, timeout=120, check=False)
    assert second_run.returncode == 0, second_run.stderr[-2000:]
    assert " 0 frames stored" in second_run.stdout
    assert scalar(daemon.db, "SELECT count(*) FROM rack_frames") == len(truth.delivered_ids())
    with duckdb.connect(str(daemon.db), read_only=True) as con:
        assert con.execute("SELECT * FROM kafka_offsets ORDER BY kafka_partition").fetchall() == offsets_before


def test_replay_refuses_while_the_daemon_holds_the_file(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory()
    daemon.start()
    while not (daemon.home / "alive").exists():
        time.sleep(0.1)
    now = datetime.now(UTC)
    env = {**os.environ, **daemon.env}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orbitwatch.cli",
            "replay",
            "--from",
            (now - timedelta(hours=1)).isoformat(),
            "--to",
            now.isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "held by another process" in result.stderr
    assert "Traceback" not in result.stderr
