"""The history loses batches it had stored while Kafka's committed offsets stay ahead: they are read again.

Two ways a history ends up behind its group's committed offsets (issue 13, item 5):

- **A restored backup.** The daemon stops (SIGTERM) a third into the backlog of two racks; the file is
  copied; a third rack comes online (its partition gets its first messages, which the backup never saw);
  the daemon runs on to the end and stops; the copy is put back in place of the file (and any WAL removed).
- **A lost WAL.** The daemon is SIGKILLed mid-backlog with a checkpoint threshold far above what it writes,
  so every batch it committed lives in ``orbitwatch.duckdb.wal`` only; the WAL is cut to half its size.

In both cases the restarted daemon must seek to the offsets DuckDB holds, not to Kafka's committed ones,
warn that "Kafka's committed offset is ahead of this history", and read the lost range again: afterwards
the ground truth holds, every frame exactly once.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from simulator.produce import produce
from tests.faults.conftest import Daemons, TopicFactory
from tests.faults.ground_truth import SMALL_FLEET, assert_ground_truth, partition_of, send, simulate
from tests.faults.polling import lines_with, run_once_to_idle, wait_out_the_session
from tests.integration.daemons import DaemonProcess, run_until_consumed
from tests.integration.fleet import scalar

pytestmark = pytest.mark.integration
PARTITIONS = 4
AHEAD = "Kafka's committed offset is ahead of this history"
FLEET = SMALL_FLEET


def wal(daemon: DaemonProcess) -> Path:
    """The daemon's DuckDB write-ahead log."""
    return daemon.db.with_name(daemon.db.name + ".wal")


def consumed_in_copy(daemon: DaemonProcess, where: Path) -> int:
    """Messages a copy of the stopped daemon's file (and WAL) accounts, without touching the originals."""
    where.mkdir()
    copy = where / daemon.db.name
    shutil.copy(daemon.db, copy)
    if wal(daemon).exists():
        shutil.copy(wal(daemon), copy.with_name(copy.name + ".wal"))
    return scalar(copy, "SELECT coalesce(sum(messages), 0) FROM kafka_offsets")


def restart_reads_the_lost_range_again(daemon: DaemonProcess) -> None:
    """Restart the daemon once, until idle; its log must warn that Kafka was ahead of the history."""
    logged = len(daemon.log_text())
    run_once_to_idle(daemon)
    restarted = daemon.log_text()[logged:]
    assert "Traceback" not in restarted, restarted[-3000:]
    assert lines_with(restarted, AHEAD), f"no warning {AHEAD!r}: {restarted[-3000:]}"


def test_a_restored_backup_reads_what_it_missed_again_and_stores_each_frame_once(
    make_topic: TopicFactory, daemons: Daemons, fault_bootstrap: str, tmp_path: Path
) -> None:
    topic = make_topic(PARTITIONS)
    sent, messages = simulate(FLEET.model_copy(update={"seed": 61}), PARTITIONS)
    late = max(sent.by_partition)  # its rack comes online after the backup: the backup never saw it
    early = [m for m in messages if partition_of(m.key, PARTITIONS) != late]
    produce(early, fault_bootstrap, topic)
    daemon = daemons(fault_bootstrap, topic, daemon__max_batch_messages="100")
    daemon.start()
    daemon.wait_for_progress(len(early) // 3)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log_text()[-3000:]
    backup = tmp_path / "backup.duckdb"
    shutil.copy(daemon.db, backup)
    at_backup = daemon.messages_consumed()
    assert 0 < at_backup < len(early), f"backup at {at_backup} of {len(early)} messages"

    produce([m for m in messages if partition_of(m.key, PARTITIONS) == late], fault_bootstrap, topic)
    run_until_consumed(daemon, sent.messages)  # on to the end: Kafka's committed offsets at the end
    shutil.copy(backup, daemon.db)  # the restore
    wal(daemon).unlink(missing_ok=True)
    assert daemon.messages_consumed() == at_backup

    restart_reads_the_lost_range_again(daemon)
    assert_ground_truth(daemon.db, sent)


def test_a_wal_cut_in_half_after_a_sigkill_reads_the_lost_range_again_and_stores_each_frame_once(
    make_topic: TopicFactory, daemons: Daemons, fault_bootstrap: str, tmp_path: Path
) -> None:
    topic = make_topic(PARTITIONS)
    sent = send(fault_bootstrap, topic, FLEET.model_copy(update={"seed": 67}), PARTITIONS)
    daemon = daemons(fault_bootstrap, topic, daemon__max_batch_messages="100", storage__checkpoint_threshold="1GB")
    daemon.start()
    daemon.wait_for_progress(sent.messages // 2)
    daemon.kill()
    size = wal(daemon).stat().st_size
    assert size > 0, "no WAL after the SIGKILL: the committed batches were checkpointed"
    at_kill = consumed_in_copy(daemon, tmp_path / "whole")
    assert 0 < at_kill < sent.messages, f"killed at {at_kill} of {sent.messages} messages"

    os.truncate(wal(daemon), size // 2)  # the WAL's tail is lost
    left = daemon.messages_consumed()
    assert left < at_kill, f"cutting the WAL to {size // 2} of {size} bytes lost no batch ({left} messages kept)"
    print(f"killed at {at_kill} messages; {left} left after the WAL was cut")

    wait_out_the_session()
    restart_reads_the_lost_range_again(daemon)
    assert_ground_truth(daemon.db, sent)
