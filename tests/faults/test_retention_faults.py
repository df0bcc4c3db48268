"""Retention under faults: a SIGKILL while days move to the archive, and partitions read at uneven pace.

One daemon run serves two scenarios of issue 13 (four simulated days of two racks, a frame every 120 s,
on a 4-partition topic; retention keeps one day and looks every 0.5 s; batches of 200 messages):

- **SIGKILL while archiving.** The daemon is killed the moment the first archive file appears (the job
  is copying a day out: its Parquet part is written, the rows not yet deleted, or the next table's is
  being copied). A restart removes what the killed job left unlisted, goes on ingesting and archiving,
  and the ground truth holds, live rows and archive together: every frame exactly once.
- **A lagging partition.** kafka-python fetches one partition's worth at a time, so one rack's frames
  arrive later than the other's; frames of a partition read later than others must be stored (into the
  archive's day when that day has moved already), never dead-lettered as belonging to an archived day.
  Proved: the only dead letters are the simulator's malformed and impossible messages.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from simulator.config import SimulationConfig
from tests.faults.conftest import Daemons, TopicFactory
from tests.faults.ground_truth import assert_ground_truth, send
from tests.faults.polling import wait_out_the_session
from tests.integration.daemons import DaemonProcess, run_until_consumed

pytestmark = pytest.mark.integration
PARTITIONS = 4
DAYS = 4
FLEET = SimulationConfig(
    satellites=1,
    racks_per_satellite=2,  # racks on partitions 0 and 3
    duration_s=DAYS * 86400,
    frame_interval_s=120,
    contact="continuous",
    start=datetime(2026, 11, 1, tzinfo=UTC),
    seed=53,
    duplicate_rate=0.02,
    loss_rate=0.002,
    malformed_rate=0.005,
    invalid_value_rate=0.003,
)
RETENTION = {
    "retention__raw_days": "1",
    "retention__rollup_days": "1",
    "retention__interval_s": "0.5",
    "daemon__max_batch_messages": "200",
}


def first_archive_file(daemon: DaemonProcess, root: Path, timeout_s: float = 60.0) -> Path:
    """Wait for the first file under the archive ``root`` (a ``.tmp`` part being written, or a part)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_file():
                    return path
        assert daemon.process is not None
        assert daemon.process.poll() is None, f"the daemon exited before it archived: {daemon.log_text()[-3000:]}"
        time.sleep(0.01)
    raise AssertionError(f"nothing archived under {root} within {timeout_s} s")


def test_a_sigkill_while_archiving_and_a_lagging_partition_lose_nothing_and_dead_letter_nothing(
    make_topic: TopicFactory, daemons: Daemons, fault_bootstrap: str
) -> None:
    topic = make_topic(PARTITIONS)
    sent = send(fault_bootstrap, topic, FLEET, PARTITIONS)
    assert len(sent.by_partition) == 2, sent.by_partition
    daemon = daemons(fault_bootstrap, topic, **RETENTION)
    root = daemon.db.with_name(daemon.db.name + ".archive")
    daemon.start()
    first_archive_file(daemon, root)
    daemon.kill()  # SIGKILL while the retention job runs

    killed_at = daemon.messages_consumed()
    assert 0 < killed_at < sent.messages, f"killed at {killed_at} of {sent.messages} messages: not mid-backlog"
    with duckdb.connect(str(daemon.db), read_only=True) as con:
        listed = {Path(str(p)).name for (p,) in con.execute("SELECT path FROM archive_log").fetchall()}
    on_disk = {p.name for p in root.rglob("*") if p.is_file()}
    print(f"killed at {killed_at} messages; {len(listed)} archive parts listed, {len(on_disk - listed)} unlisted")

    wait_out_the_session()
    run_until_consumed(daemon, sent.messages)  # restarted: removes the killed job's leftovers, goes on
    log = daemon.log_text()
    assert "Traceback" not in log, log[-3000:]
    left = {p.name for p in root.rglob("*") if p.is_file()}
    with duckdb.connect(str(daemon.db), read_only=True) as con:
        listed = {Path(str(p)).name for (p,) in con.execute("SELECT path FROM archive_log").fetchall()}
        parts_by_day = dict(
            con.execute(
                "SELECT day, count(*) FROM archive_log WHERE table_name = 'rack_frames' GROUP BY day"
            ).fetchall()
        )
        reasons = con.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason").fetchall()
    assert left == listed, f"archive files not in archive_log: {sorted(left - listed)}; missing: {listed - left}"
    assert date(2026, 11, 1) in parts_by_day, f"the first day was never archived: {parts_by_day}"

    # The lagging partition: its frames reached days already archived (stored, archived as another part of
    # the day), and no dead letter but the simulator's malformed and impossible messages.
    assert max(parts_by_day.values()) >= 2, f"no frame arrived for a day already archived: {parts_by_day}"
    about_age = [(r, n) for r, n in reasons if "archiv" in r.lower() or "day" in r.lower()]
    assert not about_age, f"frames dead-lettered for their day: {about_age}"
    impossible = sum(n for r, n in reasons if r.startswith("impossible frame"))
    malformed = sum(n for r, n in reasons if not r.startswith("impossible frame"))
    assert malformed == sent.truth.malformed_sent, reasons
    assert impossible == sum(1 for v in sent.truth.invalid_values if v.kind == "future_sampled_at"), reasons

    assert_ground_truth(daemon.db, sent, archive=True)
