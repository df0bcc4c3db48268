"""Exactly-once under SIGKILL, schema evolution in one partition, and two daemons in one group."""

from __future__ import annotations

import random
import signal
import time

import pytest

from simulator.config import SimulationConfig
from tests.integration.daemons import GROUP_SETTINGS, DaemonFactory, run_until_consumed
from tests.integration.fleet import (
    dead_letter_keys,
    expected_stored,
    rejected_frames,
    scalar,
    send_fleet,
    stored_keys,
)

pytestmark = pytest.mark.integration
SESSION_TIMEOUT_S = int(GROUP_SETTINGS["ORBITWATCH_KAFKA__SESSION_TIMEOUT_MS"]) / 1000

# 16 racks x 10 minutes (9,600+ messages): four kills, each after the restarted daemon's first commit (of 300)
# plus up to 0.5 s, consumed at most 1,500 messages each here, so the backlog outlasts them.
CRASH_FLEET = SimulationConfig(
    satellites=4,
    racks_per_satellite=4,
    duration_s=600,
    seed=11,
    duplicate_rate=0.05,
    loss_rate=0.002,
    reboot_rate_per_hour=2.0,  # 5 racks reboot in these 10 minutes (0.5 over 20 minutes rebooted none)
    malformed_rate=0.01,
    invalid_value_rate=0.005,
)


def test_every_frame_is_stored_exactly_once_across_sigkills(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory
) -> None:
    truth = send_fleet(bootstrap, topic, CRASH_FLEET)
    daemon = daemon_factory(daemon__max_batch_messages="300")
    rng = random.Random(5)
    consumed_at_kills: list[int] = []
    for _ in range(4):
        daemon.start()
        daemon.wait_for_progress(consumed_at_kills[-1] if consumed_at_kills else 0)  # it ingests now
        time.sleep(rng.uniform(0.0, 0.5))  # a kill at any point of the batch flow
        assert daemon.process is not None
        assert daemon.process.poll() is None, "the daemon exited before it was killed"
        daemon.kill()
        consumed_at_kills.append(daemon.messages_consumed())
        # A restarted pod comes back after the group has expired the killed member: Tansu loops in
        # rebalance when a new member joins while the dead one still holds partitions (DESIGN.md).
        time.sleep(SESSION_TIMEOUT_S + 1)
    assert consumed_at_kills[-1] < truth.messages_sent, "the backlog ran out before the last kill"
    progress = [b - a for a, b in zip([0, *consumed_at_kills], consumed_at_kills, strict=False)]
    assert sum(p > 0 for p in progress) >= 2, f"too few kills landed mid-ingestion: {consumed_at_kills}"
    run_until_consumed(daemon, truth.messages_sent)

    keys = stored_keys([daemon.db])
    assert len(keys) == len(set(keys))
    assert set(keys) == expected_stored(truth)
    assert scalar(daemon.db, "SELECT count(*) FROM gpu_samples") == 64 * len(keys)
    duplicated_samples = """SELECT count(*) FROM (SELECT rack_id, boot_epoch, frame_seq, node, gpu
        FROM gpu_samples GROUP BY ALL HAVING count(*) > 1)"""
    assert scalar(daemon.db, duplicated_samples) == 0

    malformed = scalar(daemon.db, "SELECT count(*) FROM dead_letters WHERE reason NOT LIKE 'impossible frame%'")
    assert malformed == truth.malformed_sent
    assert set(dead_letter_keys(daemon.db, "impossible frame%")) == rejected_frames(truth)

    consumed = scalar(daemon.db, "SELECT sum(messages) FROM kafka_offsets")
    accounted = scalar(daemon.db, "SELECT sum(frames_stored + duplicates_dropped + dead_letters) FROM kafka_offsets")
    dead = scalar(daemon.db, "SELECT count(*) FROM dead_letters")
    assert consumed == truth.messages_sent
    assert accounted == consumed
    assert scalar(daemon.db, "SELECT sum(dead_letters) FROM kafka_offsets") == dead
    assert scalar(daemon.db, "SELECT sum(frames_stored) FROM kafka_offsets") == len(keys)


def test_v1_and_v2_frames_in_one_partition_are_all_stored(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory
) -> None:
    fleet = SimulationConfig(
        satellites=1,
        racks_per_satellite=1,
        duration_s=300,
        contact="continuous",
        v2_fraction=0.0,
        upgrade_fraction=1.0,
        duplicate_rate=0.0,
        loss_rate=0.0,
        seed=3,
    )
    truth = send_fleet(bootstrap, topic, fleet)
    assert truth.frames_by_schema_id.get(1, 0) > 0
    assert truth.frames_by_schema_id.get(2, 0) > 0
    daemon = daemon_factory()
    run_until_consumed(daemon, truth.messages_sent)

    assert set(stored_keys([daemon.db])) == truth.delivered_ids()
    assert scalar(daemon.db, "SELECT count(DISTINCT kafka_partition) FROM rack_frames") == 1
    assert scalar(daemon.db, "SELECT count(*) FROM rack_frames WHERE schema_id = 1") == truth.frames_by_schema_id[1]
    v1_with_firmware = "SELECT count(*) FROM rack_frames WHERE schema_id = 1 AND firmware <> 'unknown'"
    assert scalar(daemon.db, v1_with_firmware) == 0
    v1_samples_with_v2_values = """SELECT count(*) FROM gpu_samples g
        JOIN rack_frames f USING (rack_id, boot_epoch, frame_seq)
        WHERE f.schema_id = 1 AND (g.nvlink_errors <> 0 OR g.row_remap_pending)"""
    assert scalar(daemon.db, v1_samples_with_v2_values) == 0
    v2_without_firmware = "SELECT count(*) FROM rack_frames WHERE schema_id = 2 AND firmware = 'unknown'"
    assert scalar(daemon.db, v2_without_firmware) == 0


def test_two_daemons_in_one_group_share_partitions_and_store_each_frame_once(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory
) -> None:
    fleet = SimulationConfig(satellites=4, racks_per_satellite=4, duration_s=900, seed=21, duplicate_rate=0.03)
    first, second = (
        daemon_factory("a", daemon__max_batch_messages="300"),
        daemon_factory("b", daemon__max_batch_messages="300"),
    )
    first.start("--exit-when-idle", "8")
    second.start("--exit-when-idle", "8")
    time.sleep(1.0)
    truth = send_fleet(bootstrap, topic, fleet)
    assert first.wait(120) == 0, first.log_text()[-3000:]
    assert second.wait(120) == 0, second.log_text()[-3000:]

    a_keys, b_keys = stored_keys([first.db]), stored_keys([second.db])
    assert a_keys, "the first daemon stored nothing: partitions were not shared"
    assert b_keys, "the second daemon stored nothing: partitions were not shared"
    assert not set(a_keys) & set(b_keys)
    assert sorted(a_keys + b_keys) == sorted(truth.delivered_ids())
    assert first.messages_consumed() + second.messages_consumed() == truth.messages_sent


def test_sigterm_finishes_the_batch_commits_and_exits_cleanly(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory
) -> None:
    # 8 racks x 10 minutes: thousands of messages in batches of 200, so SIGTERM lands mid-ingestion
    truth = send_fleet(bootstrap, topic, SimulationConfig(satellites=2, racks_per_satellite=4, duration_s=600, seed=2))
    daemon = daemon_factory(daemon__max_batch_messages="200")
    daemon.start()
    daemon.wait_for_progress()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    log = daemon.log_text()
    assert "SIGTERM received" in log
    assert "closed" in log
    consumed = daemon.messages_consumed()
    assert 0 < consumed <= truth.messages_sent
    run_until_consumed(daemon, truth.messages_sent)
    assert set(stored_keys([daemon.db])) == truth.delivered_ids()
