"""The disk holding the DuckDB file fills up mid-ingestion, then is freed: nothing partial, nothing lost.

The history file lives on a small tmpfs of its own (mounted for the test: the suite needs root). Right
after the daemon's first commit a ballast file takes every free byte, so the next batch's write fails.
Proved: the daemon stops (exit code 1) with an error naming the database file and the full disk, and
what the file holds then is whole batches only (every stored frame counted in ``kafka_offsets`` with its
64 GPU samples); after the ballast is removed a restarted daemon ingests the rest, and the ground truth
holds exactly once. A restart while the disk is still full fails at once with the same kind of message (not
a port problem, issue 13).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Daemons, TopicFactory
from tests.faults.ground_truth import SMALL_FLEET, assert_ground_truth, send
from tests.integration.daemons import run_until_consumed
from tests.integration.fleet import scalar

pytestmark = pytest.mark.integration
PARTITIONS = 4
TMPFS_SIZE = "64m"
FLEET = SMALL_FLEET.model_copy(update={"seed": 43})


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs mounted for this test (unmounted at the end); the fault suite needs root for it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem has no byte left (ENOSPC); returns the bytes written."""
    chunk = b"\0" * (1 << 20)
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                n = os.write(fd, chunk if len(chunk) else b"\0")
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 2]
                continue
            written += n
    finally:
        os.close(fd)


def test_a_full_disk_fails_the_batch_whole_and_a_restart_after_freeing_it_stores_the_rest_once(
    make_topic: TopicFactory, daemons: Daemons, small_disk: Path, fault_bootstrap: str
) -> None:
    topic = make_topic(PARTITIONS)
    sent = send(fault_bootstrap, topic, FLEET, PARTITIONS)
    db = small_disk / "orbitwatch.duckdb"
    daemon = daemons(fault_bootstrap, topic, daemon__max_batch_messages="100", storage__path=str(db))
    daemon.db = db  # the log and liveness file stay on the big disk; only the history is on the small one
    daemon.start()
    daemon.wait_for_progress()
    ballast = small_disk / "ballast"
    assert fill(ballast) > 0
    code = daemon.wait(60)
    log = daemon.log_text()
    print(log[-5000:])
    assert code == 1, log[-3000:]
    assert "No space left on device" in log, log[-3000:]
    assert str(db) in log, log[-3000:]

    logged = len(log)
    # The disk still full: the restart fails at once, naming what it could not write. It runs in a group of its
    # own: it fails while joining, and Tansu may then hold the next member's join of that group for minutes.
    group = daemon.env["ORBITWATCH_KAFKA__GROUP_ID"]
    daemon.env["ORBITWATCH_KAFKA__GROUP_ID"] = f"{group}-still-full"
    daemon.start()
    assert daemon.wait(60) == 1, daemon.log_text()[-3000:]
    daemon.env["ORBITWATCH_KAFKA__GROUP_ID"] = group
    restart = daemon.log_text()[logged:]
    assert "No space left on device" in restart, restart[-3000:]
    assert str(db) in restart, restart[-3000:]  # the history or its <db>.query.json: a file beside it
    assert "query.port" not in restart, restart[-3000:]
    assert "Traceback" not in restart, restart[-3000:]

    ballast.unlink()
    consumed = daemon.messages_consumed()
    assert 0 < consumed < sent.messages, "the disk filled before the first or after the last batch"
    stored = scalar(db, "SELECT count(*) FROM rack_frames")
    assert scalar(db, "SELECT sum(frames_stored) FROM kafka_offsets") == stored  # whole batches only
    assert scalar(db, "SELECT count(*) FROM gpu_samples") == 64 * stored

    run_until_consumed(daemon, sent.messages)
    assert_ground_truth(daemon.db, sent)
