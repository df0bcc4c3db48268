"""Derived tables through the real writer and DuckDB: late frames recompute exactly the windows they change.

Hand-computed: one GPU whose single-bit ECC counter reads 0 (seconds 0-29), 3 (30-118), 5 (119) and 6
(120-179). Stored without frame 119, the rise 3 -> 6 lands in minute 2; when frame 119 arrives hours late,
minute 1 must gain 2 (3 -> 5) and minute 2 keep 1 (5 -> 6): the late frame's window *and* the next
present frame's window are recomputed, and the result equals in-order storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ingest.codec import FrameDecoder
from orbitwatch import assemble
from processing.rows import prepare_batch
from storage.database import open_database
from storage.derived import DerivedTables
from storage.writer import HistoryWriter, StoredBatch
from tests.helpers.frames import DEFAULT_SAMPLED_AT, encode_message, gpu_sample, rack_frame, raw_batch, registry

T0 = DEFAULT_SAMPLED_AT
HOURS_LATE_MS = int((T0 + timedelta(hours=3)).timestamp() * 1000)


def ecc(second: int) -> int:
    return 0 if second < 30 else 3 if second < 119 else 5 if second == 119 else 6


def frame(second: int, **gpu: Any) -> bytes:
    values = {"ecc_sbe": ecc(second), "ecc_dbe": 0, "nvlink_errors": 0, "xid": None, "throttle_reasons": 0} | gpu
    sample = gpu_sample(0, 0, **values)
    return encode_message(rack_frame(frame_seq=second, sampled_at=T0 + timedelta(seconds=second), gpus=[sample]), 2)


class Store:
    """A database with derived tables and a writer that stores encoded frames as the daemon does."""

    def __init__(self, path: Path) -> None:
        self.con = open_database(path)
        self.writer = HistoryWriter(self.con, DerivedTables(self.con))
        self.decoder = FrameDecoder(registry())
        self.offset = 0

    def store(self, values: list[bytes], received_ms: int | None = None) -> StoredBatch:
        stamps = [received_ms] * len(values) if received_ms is not None else None
        raw = raw_batch(list(values), first_offset=self.offset, timestamps_ms=stamps)
        self.offset += len(values)
        decoded = self.decoder.decode(raw)
        return self.writer.write(assemble.to_store(raw, decoded, prepare_batch(decoded.frames)))

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def table(self, name: str, drop: list[str]) -> pl.DataFrame:
        frame: pl.DataFrame = self.con.sql(f"SELECT * FROM {name}").pl()
        return frame.drop(drop).sort(pl.all())


@pytest.fixture
def late(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "late.duckdb")
    yield store
    store.con.close()


def increments(store: Store) -> list[tuple[int, int]]:
    rows = store.rows("SELECT minute(window_start), ecc_sbe_inc FROM gpu_rollups_1m ORDER BY window_start")
    return [(int(m), int(i)) for m, i in rows]


def test_a_late_frame_recomputes_its_window_and_the_next_frames_window(late: Store, tmp_path: Path) -> None:
    first = late.store([frame(s) for s in range(180) if s != 119])
    assert first.derived is not None
    assert first.derived.windows == 3
    assert increments(late) == [(0, 3), (1, 0), (2, 3)]
    assert late.rows("SELECT first_missing, last_missing, missing FROM telemetry_gaps") == [(119, 119, 1)]

    second = late.store([frame(119)], received_ms=HOURS_LATE_MS)
    assert second.derived is not None
    assert second.derived.windows == 2  # minute 1, and minute 2 (frame 120's increment changes)
    assert increments(late) == [(0, 3), (1, 2), (2, 1)]
    assert late.rows("SELECT count(*) FROM telemetry_gaps") == [(0,)]

    in_order = Store(tmp_path / "in-order.duckdb")
    in_order.store([frame(s) for s in range(180)])
    for name, drop in [("gpu_windows_1m", ["computed_at"]), ("rack_windows_1m", ["computed_at", "last_frame_at"])]:
        assert_frame_equal(late.table(name, drop), in_order.table(name, drop), check_exact=True)
    in_order.con.close()


def test_duplicates_and_replays_change_nothing(late: Store) -> None:
    late.store([frame(s) for s in range(120)])
    before = late.table("gpu_windows_1m", ["computed_at"])
    again = late.store([frame(s) for s in range(0, 120, 7)], received_ms=HOURS_LATE_MS)
    assert again.frames_stored == 0
    assert_frame_equal(late.table("gpu_windows_1m", ["computed_at"]), before, check_exact=True)


def test_rollup_coverage_and_health_of_a_hot_gpu_by_hand(late: Store) -> None:
    late.store([frame(s, temp_c=91.5 if s >= 30 else 60.0) for s in range(0, 60, 2)])  # 30 of 60 seconds
    [(samples, coverage, temp_max, state, reasons)] = late.rows(
        "SELECT samples, coverage, temp_max, state, reasons FROM gpu_rollups_1m"
    )
    assert (samples, coverage, temp_max, state) == (30, 0.5, 91.5, "critical")
    assert reasons == ["gpu temp 91.5 C >= critical 90 C"]
    [(rack_state, rack_reasons)] = late.rows("SELECT state, reasons FROM rack_health_history")
    assert (rack_state, rack_reasons) == ("critical", ["node 0: gpu 0: gpu temp 91.5 C >= critical 90 C"])
    [(node_state,)] = late.rows("SELECT state FROM node_health_1m")
    assert node_state == "critical"


def test_tenant_usage_counts_gpu_seconds_per_tenant_and_hour(late: Store) -> None:
    late.store([frame(s, tenant="acme" if s < 90 else None) for s in range(120)])
    assert late.rows("SELECT tenant, gpu_seconds, racks, gpus FROM tenant_usage_hourly") == [("acme", 90, 1, 1)]


def test_fleet_health_now_follows_the_grounds_clock(late: Store) -> None:
    late.store([frame(s) for s in range(60)])
    [(state, as_of)] = late.rows("SELECT state, as_of FROM fleet_health_now")
    assert state == "ok"
    assert as_of == T0 + timedelta(minutes=1)  # the newest Kafka timestamp stored (tests/helpers/frames.py)
    # One pass seen, so the next is predicted an orbit (96 min) after it: an hour later the silence is a
    # predicted loss of signal (unknown, never critical); two hours later the rack is overdue (stale).
    assert late.writer.refresh_now(advanced_by=3600) == 1
    [(state, reasons, known)] = late.rows("SELECT state, reasons, last_known_state FROM fleet_health_now")
    assert (state, known) == ("unknown", "ok")
    assert reasons[0].startswith("predicted loss of signal since")
    assert late.writer.refresh_now(advanced_by=7200) == 1
    [(state, reasons)] = late.rows("SELECT state, reasons FROM fleet_health_now")
    assert state == "degraded"
    assert reasons[0].startswith("stale: no frame for")
    logged = late.rows("SELECT state FROM rack_health_log ORDER BY as_of")
    assert [s for (s,) in logged] == ["ok", "unknown", "degraded"]


def test_processing_disabled_stores_raw_rows_only(tmp_path: Path) -> None:
    con = open_database(tmp_path / "raw.duckdb")
    writer = HistoryWriter(con, None)
    decoder = FrameDecoder(registry())
    raw = raw_batch([frame(s) for s in range(10)])
    decoded = decoder.decode(raw)
    stored = writer.write(assemble.to_store(raw, decoded, prepare_batch(decoded.frames)))
    assert (stored.frames_stored, stored.derived) == (10, None)
    assert con.execute("SELECT count(*) FROM gpu_windows_1m").fetchall() == [(0,)]
    con.close()


def test_a_database_from_before_the_derived_tables_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as con:
        from storage.schema import LATEST_VERSION, MIGRATIONS

        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, "
                    "applied_at TIMESTAMPTZ NOT NULL)")  # fmt: skip
        for statement in MIGRATIONS[0].statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (1, 'backbone', now())")
    con2 = open_database(path)
    assert con2.execute("SELECT max(version) FROM schema_migrations").fetchall() == [(LATEST_VERSION,)]
    assert con2.execute("SELECT count(*) FROM fleet_health_now").fetchall() == [(0,)]
    con2.close()


def test_a_late_frame_reaches_a_gpu_whose_next_sample_is_minutes_later(late: Store, tmp_path: Path) -> None:
    # GPU 1 is missing from the frames of minute 1 (fell off the bus): after late frame 50, its next
    # readable sample is in minute 2, not in the next stored minute; every stored minute of the horizon
    # after a late frame is recomputed, so the ECC rise at second 50 is counted once.
    def with_gpus(second: int) -> bytes:
        values: dict[str, Any] = {"ecc_dbe": 0, "nvlink_errors": 0, "xid": None, "throttle_reasons": 0}
        gpus = [0] if 60 <= second < 120 else [0, 1]
        samples = [gpu_sample(0, k, **values, ecc_sbe=(4 if k == 1 and second >= 50 else 0)) for k in gpus]
        return encode_message(rack_frame(frame_seq=second, sampled_at=T0 + timedelta(seconds=second), gpus=samples), 2)

    seconds = range(0, 180, 10)
    late.store([with_gpus(s) for s in seconds if s != 50])
    late.store([with_gpus(50)], received_ms=HOURS_LATE_MS)
    in_order = Store(tmp_path / "in-order.duckdb")
    in_order.store([with_gpus(s) for s in seconds])
    query = "SELECT minute(window_start), ecc_sbe_inc FROM gpu_windows_1m WHERE gpu = 1 ORDER BY 1"
    assert late.rows(query) == in_order.rows(query) == [(0, 4), (2, 0)]
    in_order.con.close()


def test_rack_health_does_not_depend_on_how_frames_were_batched(tmp_path: Path) -> None:
    # 40 minutes, two frames a minute: 1 SEU/min, minutes 12-19 lost, a storm of 30/min from minute 30.
    seu, frames = 0, []
    for minute in [*range(12), *range(20, 40)]:
        for second in (0, 30):
            seu += (30 if minute >= 30 else 1) if second == 30 else 0
            radiation = {"seu_count": seu, "dose_rate_mrad_h": 1.5}
            sampled = T0 + timedelta(minutes=minute, seconds=second)
            frames.append((minute, encode_message(rack_frame(frame_seq=minute * 60 + second, sampled_at=sampled,
                                                             gpus=[], radiation=radiation), 2)))  # fmt: skip
    stores = [Store(tmp_path / f"{name}.duckdb") for name in ("one", "three", "late")]
    received = HOURS_LATE_MS  # all after the last sample (a frame sampled after its receipt is rejected)
    stores[0].store([f for _, f in frames], received_ms=received)
    for part in ((0, 12), (12, 30), (30, 40)):
        stores[1].store([f for m, f in frames if part[0] <= m < part[1]], received_ms=received)
    stores[2].store([f for m, f in frames if m < 12 or m >= 30], received_ms=received)
    stores[2].store([f for m, f in frames if 12 <= m < 30], received_ms=received + 3_600_000)
    tables = [s.table("rack_windows_1m", ["computed_at", "last_frame_at"]) for s in stores]
    for other in tables[1:]:
        assert_frame_equal(other, tables[0], check_exact=True)
    states = tables[0].sort("window_start")["state"].to_list()
    assert "degraded" in states[-10:], "the storm must be found"
    assert set(states[:-10]) == {"ok"}
    for store in stores:
        store.con.close()
