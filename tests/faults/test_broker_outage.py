"""The broker goes away for 20 s mid-backlog and comes back on the same port: the daemon waits it out.

The daemon reaches its broker through a ``Gate`` (tests/faults/servers.py): closing it refuses and resets
every connection, as a stopped broker does, while the broker's in-memory log and group survive, as a
durable broker's would. Proved while the broker is away: the daemon stays up, its liveness file stays
fresh (touched within the last 8 s at every look, far inside ``health --max-age 30``), its log says
"broker unreachable" once, and
``GET /v1/status`` answers ``broker.reachable`` false. Once the gate opens: "broker reachable again" once,
``broker.reachable`` true, the rest of the backlog ingested; SIGTERM exits 0, a restart finds nothing to
read, and the ground truth holds exactly once.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.admin import create_topic
from tests.faults.conftest import Daemons
from tests.faults.ground_truth import SMALL_FLEET, assert_ground_truth, send
from tests.faults.polling import lines_with, status
from tests.faults.servers import GatedBroker
from tests.integration.daemons import DaemonProcess, run_until_consumed

pytestmark = pytest.mark.integration
OUTAGE_S = 20.0
LIVENESS_MAX_AGE_S = 8.0  # the first commit after the broker left waits its 5 s timeout; then nothing blocks
PARTITIONS = 4
FLEET = SMALL_FLEET.model_copy(update={"seed": 47})


@pytest.fixture
def gated_broker(tmp_path: Path) -> Iterator[GatedBroker]:
    """A broker of this scenario alone, reached through a gate the test closes and opens."""
    with GatedBroker(tmp_path / "tansu.log") as broker:
        yield broker


def reachable(daemon: DaemonProcess) -> bool | None:
    """``broker.reachable`` of the daemon's ``/v1/status`` (None while it gives no such answer)."""
    answer = status(daemon)
    broker = answer.get("broker") if answer is not None else None
    value = broker.get("reachable") if isinstance(broker, dict) else None
    return value if isinstance(value, bool) else None


def until_reachable_is(daemon: DaemonProcess, expected: bool, timeout_s: float) -> None:
    """Poll ``/v1/status`` until ``broker.reachable`` is ``expected``."""
    deadline, seen = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        seen = reachable(daemon)
        if seen is expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"/v1/status broker.reachable is {seen}, not {expected}: {daemon.log_text()[-3000:]}")


def test_a_broker_away_for_20_s_is_waited_out_reported_once_and_nothing_is_lost(
    gated_broker: GatedBroker, daemons: Daemons
) -> None:
    bootstrap = gated_broker.bootstrap_servers
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, PARTITIONS)
    sent = send(bootstrap, topic, FLEET, PARTITIONS)
    daemon = daemons(bootstrap, topic, daemon__max_batch_messages="100")
    liveness = daemon.home / "alive"
    daemon.start()
    before = daemon.wait_for_progress()
    until_reachable_is(daemon, True, timeout_s=10)

    logged_before = len(daemon.log_text())
    gated_broker.gate.close()
    statuses: list[bool | None] = []
    try:
        closed_at = time.monotonic()
        while time.monotonic() - closed_at < OUTAGE_S:
            assert daemon.process is not None
            assert daemon.process.poll() is None, f"the daemon exited during the outage: {daemon.log_text()[-3000:]}"
            age = time.time() - liveness.stat().st_mtime
            assert age <= LIVENESS_MAX_AGE_S, f"liveness file {age:.1f} s old during the outage"
            statuses.append(reachable(daemon))
            time.sleep(0.5)
        during = daemon.log_text()[logged_before:]
    finally:
        gated_broker.gate.open()
    assert before < sent.messages, "the backlog was read before the outage"
    assert len(lines_with(during, "broker unreachable")) == 1, during[-3000:]
    assert False in statuses, f"/v1/status never said broker.reachable false during the outage: {statuses}"
    assert statuses[-1] is False, f"/v1/status at the end of the outage: {statuses[-5:]}"

    until_reachable_is(daemon, True, timeout_s=40)
    daemon.wait_for_progress(sent.messages - 1, timeout_s=60)  # the rest of the backlog ingested
    since = daemon.log_text()[logged_before:]
    assert len(lines_with(since, "broker unreachable")) == 1, since[-3000:]
    assert len(lines_with(since, "broker reachable again")) == 1, since[-3000:]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log_text()[-3000:]
    run_until_consumed(daemon, sent.messages)
    assert "Traceback" not in daemon.log_text()
    assert_ground_truth(daemon.db, sent)
