"""The broker freezes mid-batch (SIGSTOP for 6 s, then SIGCONT): the daemon rides it out and recovers.

A dedicated broker (not the shared one of the other scenarios) is paused right after the daemon's first
commit, while most of a 3-partition backlog is still unread: polls, fetches, the Kafka offset commit and
the group's heartbeats all hang on a broker that accepts nothing. The daemon must neither exit nor store
anything twice; after SIGCONT it goes on where it was, ingests the whole backlog, stops cleanly on SIGTERM,
and a restart finds nothing left to read. The end: the simulator's ground truth, exactly once.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.admin import create_topic
from orbitwatch.broker import EmbeddedBroker
from tests.faults.conftest import Daemons
from tests.faults.ground_truth import SMALL_FLEET, assert_ground_truth, send
from tests.integration.daemons import run_until_consumed

pytestmark = pytest.mark.integration
PAUSE_S = 6.0  # longer than the group session (4 s): the broker resumes with the member overdue
PARTITIONS = 4
# 3 racks (partitions 0, 2 and 3) x 5 minutes: ~930 messages in batches of 100, so the pause lands mid-backlog.
FLEET = SMALL_FLEET.model_copy(update={"seed": 41})


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker for this scenario alone (it is paused); resumed and stopped at the end in any case."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        yield broker
    finally:
        if broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


def test_a_broker_paused_mid_batch_loses_nothing_and_repeats_nothing(
    own_broker: EmbeddedBroker, daemons: Daemons
) -> None:
    topic = f"paused-{uuid.uuid4().hex[:8]}"
    create_topic(own_broker.bootstrap_servers, topic, PARTITIONS)
    sent = send(own_broker.bootstrap_servers, topic, FLEET, PARTITIONS)
    daemon = daemons(own_broker.bootstrap_servers, topic, daemon__max_batch_messages="100")
    daemon.start()
    before = daemon.wait_for_progress()
    assert own_broker.pid is not None
    os.kill(own_broker.pid, signal.SIGSTOP)
    try:
        paused_at = time.monotonic()
        while time.monotonic() - paused_at < PAUSE_S:  # the fault lasts PAUSE_S; the daemon must stay up
            assert daemon.process is not None
            assert daemon.process.poll() is None, (
                f"the daemon exited while the broker was paused: {daemon.log_text()[-3000:]}"
            )
            time.sleep(0.2)
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
    assert before < sent.messages, "the backlog was read before the broker was paused"

    daemon.wait_for_progress(sent.messages - 1, timeout_s=60)  # recovered: the whole backlog accounted
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log_text()[-3000:]
    run_until_consumed(daemon, sent.messages)  # restarted: nothing left, nothing read twice
    assert "Traceback" not in daemon.log_text()
    assert_ground_truth(daemon.db, sent)
