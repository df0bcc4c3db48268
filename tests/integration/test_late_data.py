"""Late data converges: the same frames in order, and shuffled hours late with duplicates, give identical tables.

Two topics on the real broker receive the same simulated fleet (reboots reset counters, lost frames leave
gaps): one in order, the other with a third of the frames held back and delivered two hours later in a
shuffled burst, every frame's copies shuffled, and extra duplicates. Two daemons store them into two
DuckDB files with small batches, so the late frames land in windows rolled up long before. The derived
tables (GPU and rack minutes with their health, tenant usage, gaps) must be equal row for row; so must
the operator views, floats compared to 1e-9 where DuckDB sums them in an order of its own.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ingest.admin import create_topic
from simulator.config import FaultSpec, SimulationConfig
from simulator.messages import SimMessage, generate
from simulator.produce import produce
from tests.integration.daemons import DaemonProcess, run_until_consumed

pytestmark = pytest.mark.integration

FLEET = SimulationConfig(
    satellites=2,
    racks_per_satellite=2,
    duration_s=25 * 60,  # 2 reboots, 13 lost frames and the whole ECC fault (40 minutes only cost CPU time)
    contact="continuous",
    seed=23,
    duplicate_rate=0.0,
    loss_rate=0.003,
    reboot_rate_per_hour=1.0,
    faults=[FaultSpec(kind="ecc_dbe", satellite=0, rack=1, node=2, gpu=3, start_s=600, duration_s=400)],
)
HOURS_LATE_MS = 2 * 3600 * 1000
# Table, columns that legitimately differ (when a row was computed; which copy's receive time), sort key.
TABLES = [
    ("gpu_windows_1m", ["computed_at"], ["rack_id", "node", "gpu", "window_start"]),
    ("rack_windows_1m", ["computed_at", "last_frame_at"], ["rack_id", "window_start"]),
    ("tenant_minutes", [], ["rack_id", "window_start", "tenant"]),
    ("open_gaps", ["detected_at"], ["rack_id", "boot_epoch", "first_missing"]),
    ("seq_bounds", [], ["rack_id", "boot_epoch"]),
]
VIEWS = [
    ("gpu_rollups_1m", [], ["rack_id", "node", "gpu", "window_start"]),
    ("rack_rollups_1h", ["last_frame_at"], ["rack_id", "window_start"]),
    ("tenant_usage_hourly", [], ["tenant", "hour"]),
    ("telemetry_gaps", ["detected_at"], ["rack_id", "boot_epoch", "first_missing"]),
    ("rack_health_history", ["computed_at"], ["rack_id", "window_start"]),
]


def late_and_shuffled(messages: list[SimMessage], seed: int) -> list[SimMessage]:
    """A third of the messages held back two hours and shuffled; 5% sent twice; the rest in order."""
    rng = random.Random(seed)
    on_time: list[SimMessage] = []
    held: list[SimMessage] = []
    for message in messages:
        (held if rng.random() < 1 / 3 else on_time).append(message)
    late = [SimMessage(m.key, m.value, m.timestamp_ms + HOURS_LATE_MS) for m in held]
    late += [
        SimMessage(m.key, m.value, m.timestamp_ms + HOURS_LATE_MS) for m in rng.sample(messages, len(messages) // 20)
    ]
    rng.shuffle(late)
    return on_time + late


def table(db: Path, name: str, drop: list[str], key: list[str]) -> pl.DataFrame:
    """A whole table or view of a stopped daemon's database, sorted by ``key``."""
    with duckdb.connect(str(db), read_only=True) as con:
        frame: pl.DataFrame = con.sql(f"SELECT * FROM {name}").pl()
    return frame.drop(drop).sort(key)


def ingest(bootstrap: str, home: Path, messages: list[SimMessage]) -> Path:
    """Produce ``messages`` to a fresh topic and store them with one daemon; returns its database."""
    topic = f"late-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, topic, 2)
    produce(messages, bootstrap, topic)
    daemon = DaemonProcess(bootstrap, topic, home, daemon__max_batch_messages="400")
    try:
        run_until_consumed(daemon, len(messages), timeout_s=240)
    finally:
        daemon.kill()
    return daemon.db


def test_in_order_and_late_shuffled_duplicated_delivery_give_identical_tables(bootstrap: str, tmp_path: Path) -> None:
    iterator, truth = generate(FLEET)
    messages = list(iterator)
    assert truth.reboots, "the fleet should reboot, so counters restart mid-run"
    assert truth.lost, "the fleet should lose frames, so there are gaps"
    in_order = ingest(bootstrap, tmp_path / "in-order", messages)
    shuffled = ingest(bootstrap, tmp_path / "late", late_and_shuffled(messages, seed=7))

    for name, drop, key in TABLES:
        expected, actual = table(in_order, name, drop, key), table(shuffled, name, drop, key)
        assert expected.height > 0, f"{name} is empty"
        assert_frame_equal(actual, expected, check_exact=True)
    for name, drop, key in VIEWS:
        assert_frame_equal(table(shuffled, name, drop, key), table(in_order, name, drop, key), rel_tol=1e-9)

    late_rollups = table(shuffled, "gpu_rollups_1m", [], ["rack_id", "node", "gpu", "window_start"])
    assert late_rollups["ecc_dbe_inc"].sum() > 0, "the double-bit ECC fault must show as increments"
    assert late_rollups["samples"].sum() == truth.distinct_frames_sent * 64
    gaps = table(shuffled, "telemetry_gaps", ["detected_at"], ["rack_id", "boot_epoch", "first_missing"])
    lost = {(r.rack_id, r.boot_epoch, s) for r in truth.lost for s in range(r.first_seq, r.last_seq + 1)}
    missing = {
        (g["rack_id"], g["boot_epoch"], s)
        for g in gaps.iter_rows(named=True)
        for s in range(g["first_missing"], g["last_missing"] + 1)
    }
    assert missing <= lost, "a gap lists a frame that was delivered"
