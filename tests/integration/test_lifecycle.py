"""A real daemon in this process: closed after driving batches itself (as the demo and the benchmarks do)
or after ``run``, with every background service on, it stops cleanly and logs no error."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest

from orbitwatch.daemon import Daemon
from orbitwatch.settings import Settings, load_settings
from simulator.config import SimulationConfig
from tests.integration.daemons import GROUP_SETTINGS
from tests.integration.fleet import send_fleet

pytestmark = pytest.mark.integration
FLEET = SimulationConfig(satellites=1, racks_per_satellite=2, duration_s=120, contact="continuous", seed=3)


def settings(bootstrap: str, topic: str, tmp_path: Path) -> Settings:
    """Every background service on: query service, metrics, retention (alerting needs a rules file)."""
    return load_settings(
        None,
        kafka={
            "bootstrap_servers": bootstrap,
            "topic": topic,
            "group_id": f"group-{topic}",
            "session_timeout_ms": int(GROUP_SETTINGS["ORBITWATCH_KAFKA__SESSION_TIMEOUT_MS"]),
            "heartbeat_interval_ms": int(GROUP_SETTINGS["ORBITWATCH_KAFKA__HEARTBEAT_INTERVAL_MS"]),
        },
        storage={"path": str(tmp_path / "history.duckdb")},
        daemon={"metrics_port": 0, "liveness_file": None, "poll_timeout_ms": 200},
        query={"port": 0},
        retention={"enabled": True},
    )


def test_a_daemon_driven_batch_by_batch_closes_cleanly(
    bootstrap: str, topic: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truth = send_fleet(bootstrap, topic, FLEET)
    daemon = Daemon(settings(bootstrap, topic, tmp_path))
    assert daemon.retention is not None
    assert daemon.services.names == ["retention", "metrics", "query service"]
    consumed = 0
    with caplog.at_level(logging.WARNING):
        try:
            for _ in range(300):
                result = daemon.run_batch()
                consumed += result.messages if result is not None else 0
                if consumed >= truth.messages_sent:
                    break
            last = daemon.commit_finished()
            consumed += last.messages if last is not None else 0
        finally:
            daemon.close()  # services never started: nothing to stop, no error
    assert consumed == truth.messages_sent
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_daemon_that_ran_stops_its_services_and_closes_cleanly(
    bootstrap: str, topic: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truth = send_fleet(bootstrap, topic, FLEET)
    daemon = Daemon(settings(bootstrap, topic, tmp_path))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}  # run() installs its own
    with caplog.at_level(logging.WARNING):
        try:
            consumed = daemon.run(exit_when_idle_s=2)
            assert daemon.services.running
        finally:
            daemon.close()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
    assert consumed == truth.messages_sent
    assert not daemon.services.running
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
