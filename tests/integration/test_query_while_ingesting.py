"""Operators query while the daemon ingests: through its query service, with the same answers as the file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from orbitwatch.discovery import discovery_path
from orbitwatch.errors import QueryServiceError
from orbitwatch.query_client import QueryClient
from simulator.config import SimulationConfig
from tests.integration.daemons import DaemonFactory, DaemonProcess
from tests.integration.fleet import send_fleet

pytestmark = pytest.mark.integration
CONSISTENT = """SELECT (SELECT count(*) FROM gpu_samples) AS raw, (SELECT coalesce(sum(samples), 0) FROM gpu_windows_1m)
    AS windowed, (SELECT count(*) FROM rack_frames) AS frames,
    (SELECT coalesce(sum(frames_stored), 0) FROM kafka_offsets) AS accounted"""


def _cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orbitwatch.cli", "query", *args]
    return subprocess.run(command, env=daemon.env, capture_output=True, text=True, check=False, timeout=60)


def _client(db: Path, timeout_s: float = 30) -> QueryClient:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        client = QueryClient.discover(db)
        if client is not None and client.health():
            return client
        time.sleep(0.2)
    raise AssertionError(f"no query service advertised in {discovery_path(db)}")


def test_queries_during_ingestion_see_whole_batches_and_match_the_file_afterwards(
    bootstrap: str, topic: str, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(daemon__max_batch_messages="200").start()
    client = _client(daemon.db)
    with pytest.raises(duckdb.IOException, match="lock"):  # why the service exists
        duckdb.connect(str(daemon.db), read_only=True)

    truth = send_fleet(bootstrap, topic, SimulationConfig(satellites=2, racks_per_satellite=2, duration_s=600, seed=5))
    seen: list[tuple[int, int, int, int]] = []
    with client:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            raw, windowed, frames, accounted = client.query(CONSISTENT).row(0)
            seen.append((raw, windowed, frames, accounted))
            assert raw == 64 * frames, "a query saw part of a batch"
            # Each rack's open minute may still be held in memory (storage.open_windows), never more.
            assert windowed <= raw
            assert frames == accounted, "rows and Kafka accounting disagree within one snapshot"
            if frames >= truth.distinct_frames_sent:
                break
        assert seen[-1][2] == truth.distinct_frames_sent
        while seen[-1][1] < seen[-1][0] and time.monotonic() < deadline:  # idle: the open minutes are written
            time.sleep(0.2)
            raw, windowed, frames, accounted = client.query(CONSISTENT).row(0)
            seen.append((raw, windowed, frames, accounted))
        assert seen[-1][1] == seen[-1][0], "the windows miss stored samples once the daemon is idle"
        assert len({s[2] for s in seen}) > 2, "the queries should have run while batches were committed"

        during = _cli(daemon, "--saved", "hottest-racks", "--param", "hours=1", "--format", "json")
        assert during.returncode == 0, during.stderr
        by_service = client.saved("hottest-racks", {"hours": 1})
        refused = _cli(daemon, "DELETE FROM gpu_samples")
        assert refused.returncode == 1
        assert "only read statements" in refused.stderr
        with pytest.raises(QueryServiceError, match="file system operations are disabled"):
            client.query("SELECT * FROM read_csv('/etc/passwd')")
        shell = subprocess.run(
            [sys.executable, "-m", "orbitwatch.cli", "sql"],
            input="SELECT count(*) AS frames\nFROM rack_frames;\nDROP TABLE rack_frames;\n.quit\n",
            env=daemon.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert str(truth.distinct_frames_sent) in shell.stdout  # the shell went through the service
        assert "only read statements" in shell.stderr
        assert shell.returncode == 1  # one statement failed

    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert not discovery_path(daemon.db).exists()
    after = _cli(daemon, "--saved", "hottest-racks", "--param", "hours=1", "--format", "json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(during.stdout)  # the service and the file agree
    assert [r["rack_id"] for r in json.loads(after.stdout)] == by_service["rack_id"].to_list()
    assert "Traceback" not in daemon.log_text()
