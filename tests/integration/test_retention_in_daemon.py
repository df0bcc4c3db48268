"""Retention inside a running daemon: old days move to the archive while it ingests, answers stay the same.

Two daemons read the same three simulated days (two racks, a frame every 10 minutes, one partition so a
backlog is read in order): one keeps everything in DuckDB, the other keeps one day (``retention.raw_days``
and ``rollup_days`` = 1, checked every second). Every saved query and a few aggregates answer the same
through the retention daemon's query service while it runs, and from its file afterwards; a frame of an
archived day that arrives afterwards is stored once (a copy of an archived frame is a duplicate, a new
frame joins the archive as another part of its day), never a dead letter.
"""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingest.admin import create_topic
from orbitwatch.query_client import QueryClient
from simulator.config import SimulationConfig
from simulator.messages import generate
from simulator.produce import produce
from storage.archive import attach_archive
from storage.database import open_database
from storage.saved_queries import SAVED_QUERIES, bind
from tests.integration.daemons import DaemonProcess, run_until_consumed
from tests.test_archive_answers import same

pytestmark = pytest.mark.integration
RACKS = ("sat-0001/rack-1", "sat-0002/rack-1")
FLEET = SimulationConfig(
    satellites=2,
    racks_per_satellite=1,
    duration_s=3 * 86400,
    frame_interval_s=600,
    contact="continuous",
    start=datetime(2026, 11, 1, tzinfo=UTC),
    seed=11,
)
ARCHIVED = {
    "rack_frames",
    "gpu_samples",
    "gpu_windows_1m",
    "rack_windows_1m",
    "tenant_minutes",
    "gpu_ecc_hours",
    "tenant_hours",
}
AGGREGATES = (
    "SELECT count(*), count(DISTINCT rack_id), min(sampled_at), max(sampled_at), sum(frame_seq) FROM rack_frames",
    "SELECT rack_id, node, gpu, count(*), max(temp_c), sum(ecc_sbe) FROM gpu_samples GROUP BY ALL",
    "SELECT rack_id, window_start, state, reasons, coverage, frames FROM rack_health_history",
    "SELECT * FROM tenant_usage_hourly",
    "SELECT * FROM fleet_utilization_1m",
    "SELECT rack_id, window_start, temp_max, util_mean, ecc_sbe_inc, state FROM gpu_rollups_1m",
)


def questions() -> list[tuple[str, dict[str, int | float | str]]]:
    """Every saved query over the whole history (and with its defaults), then the aggregates."""
    asked: list[tuple[str, dict[str, int | float | str]]] = []
    for query in SAVED_QUERIES.values():
        for given in ({}, {"hours": "1000", "limit": "1000"}):
            usable = {k: v for k, v in given.items() if k in query.parameters}
            for rack in RACKS if "rack" in query.parameters else ("",):
                asked.append((query.sql, bind(query, {**usable, **({"rack": rack} if rack else {})})))
    return asked + [(sql, {}) for sql in AGGREGATES]


def sorted_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=repr)


def test_days_move_to_the_archive_while_the_daemon_ingests_and_answers_stay_the_same(
    bootstrap: str, tmp_path: Path
) -> None:
    topic = f"retention-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)
    messages, truth = generate(FLEET)
    produce(messages, bootstrap, topic)
    keeping = DaemonProcess(bootstrap, topic, tmp_path / "keeping", kafka__group_id="keeping")
    retaining = DaemonProcess(
        bootstrap,
        topic,
        tmp_path / "retaining",
        kafka__group_id="retaining",
        retention__raw_days="1",
        retention__rollup_days="1",
        retention__interval_s="1",
    )
    try:
        run_until_consumed(keeping, truth.messages_sent)
        retaining.start()
        client = _service(retaining)
        with client:
            deadline = time.monotonic() + 60
            archived: set[str] = set()
            while time.monotonic() < deadline and archived != ARCHIVED:  # rack_health_log: no change that day
                archived = set(client.query("SELECT DISTINCT table_name FROM archive_log")["table_name"])
                time.sleep(0.5)
            assert archived == ARCHIVED, retaining.log_text()[-3000:]
            consumed = client.query("SELECT sum(messages) AS n FROM kafka_offsets")["n"][0]
            assert consumed == truth.messages_sent
            with duckdb.connect(str(keeping.db), read_only=True) as reference:
                expected = [sorted_rows(reference.execute(sql, p).fetchall()) for sql, p in questions()]
            through_service = [sorted_rows(client.query(sql, p or None).rows()) for sql, p in questions()]
            for (sql, _), want, got in zip(questions(), expected, through_service, strict=True):
                assert same(want, got), sql
            live_days = client.query("SELECT count(DISTINCT sampled_at::DATE) AS days FROM orbitwatch.main.rack_frames")
            assert live_days["days"][0] == 2  # the newest day and the one kept live; the first moved
        retaining.signal(signal.SIGTERM)
        assert retaining.wait(60) == 0
        con = open_database(retaining.db, read_only=True)
        attach_archive(con)
        from_file = [sorted_rows(con.execute(sql, p).fetchall()) for sql, p in questions()]
        con.close()
        assert all(same(a, b) for a, b in zip(expected, from_file, strict=True))
        assert "Traceback" not in retaining.log_text()
        assert "archived rack_frames 2026-11-01: 288 rows" in retaining.log_text()

        hour = {"duration_s": 3600.0, "duplicate_rate": 0.0, "loss_rate": 0.0}
        copies = list(generate(FLEET.model_copy(update={**hour, "seed": 12}))[0])  # 2026-11-01 00:00-01:00 again
        rebooted = list(generate(FLEET.model_copy(update={**hour, "boot_epoch": 1}))[0])  # new frames of that day
        produce(copies + rebooted, bootstrap, topic)
        run_until_consumed(retaining, truth.messages_sent + len(copies) + len(rebooted))
        con = open_database(retaining.db, read_only=True)
        try:
            assert con.execute("SELECT count(*) FROM dead_letters").fetchall() == [(0,)]
            counted = con.execute("SELECT sum(frames_stored), sum(duplicates_dropped) FROM kafka_offsets").fetchall()
            attach_archive(con)
            union = con.execute("SELECT count(*), count(DISTINCT (rack_id, boot_epoch, frame_seq)) FROM rack_frames")
            stored = union.fetchall()[0]
        finally:
            con.close()
        assert counted == [(truth.distinct_frames_sent + len(rebooted), truth.duplicates_sent + len(copies))]
        assert stored == (truth.distinct_frames_sent + len(rebooted),) * 2  # each once, live or archived
    finally:
        keeping.kill()
        retaining.kill()


def _service(daemon: DaemonProcess, timeout_s: float = 60) -> QueryClient:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        client = QueryClient.discover(daemon.db)
        if client is not None and client.health():
            return client
        time.sleep(0.2)
    raise AssertionError(daemon.log_text()[-3000:])
