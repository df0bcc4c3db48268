"""Counter increments, GPU/rack rollups, tenant usage and fleet utilization, with hand-computed values.

The properties at the end are what the late-data recompute relies on: rollups of all data at once equal
rollups computed window by window from each window's samples plus one lookback row per entity, whatever
the input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from processing.counters import counter_increments, increments_and_state, windows_touched_by_late_frames
from processing.errors import FrameShapeError
from processing.rollups import gpu_rollups, rack_rollups
from processing.usage import fleet_utilization, tenant_usage_hourly
from processing.windows import TENANT_BOUNDS, tenant_minutes

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TS = pl.Datetime("us", "UTC")
GPU_SCHEMA: dict[str, Any] = {
    "rack_id": pl.String,
    "boot_epoch": pl.Int32,
    "frame_seq": pl.Int64,
    "sampled_at": TS,
    "node": pl.Int32,
    "gpu": pl.Int32,
    "util_pct": pl.Float32,
    "mem_used_mib": pl.Int32,
    "mem_total_mib": pl.Int32,
    "power_w": pl.Float32,
    "temp_c": pl.Float32,
    "hbm_temp_c": pl.Float32,
    "sm_clock_mhz": pl.Int32,
    "ecc_sbe": pl.Int64,
    "ecc_dbe": pl.Int64,
    "xid": pl.Int32,
    "nvlink_errors": pl.Int64,
    "row_remap_pending": pl.Boolean,
    "throttle_reasons": pl.Int32,
    "tenant": pl.String,
    "invalid_mask": pl.Int32,
}
RACK_SCHEMA: dict[str, Any] = {
    "rack_id": pl.String,
    "boot_epoch": pl.Int32,
    "frame_seq": pl.Int64,
    "sampled_at": TS,
    "bus_w": pl.Float32,
    "battery_soc": pl.Float32,
    "in_eclipse": pl.Boolean,
    "radiator_c": pl.Float32,
    "coolant_inlet_c": pl.Float32,
    "coolant_outlet_c": pl.Float32,
    "seu_count": pl.Int64,
}
GPU_COUNTERS = ["ecc_sbe", "ecc_dbe", "nvlink_errors"]
GPU_KEYS = ["rack_id", "node", "gpu"]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def gpu_row(seq: int, second: float, **values: Any) -> dict[str, Any]:
    """One ``gpu_samples`` row of rack r1, GPU (0, 0), epoch 1, with plain defaults."""
    row: dict[str, Any] = {
        "rack_id": "r1",
        "boot_epoch": 1,
        "frame_seq": seq,
        "sampled_at": at(second),
        "node": 0,
        "gpu": 0,
        "util_pct": 50.0,
        "mem_used_mib": 1000,
        "mem_total_mib": 80000,
        "power_w": 300.0,
        "temp_c": 60.0,
        "hbm_temp_c": 70.0,
        "sm_clock_mhz": 1800,
        "ecc_sbe": 0,
        "ecc_dbe": 0,
        "xid": None,
        "nvlink_errors": 0,
        "row_remap_pending": False,
        "throttle_reasons": 0,
        "tenant": None,
        "invalid_mask": 0,
    }
    return row | values


def rack_row(seq: int, second: float, **values: Any) -> dict[str, Any]:
    """One ``rack_frames`` row (the columns rollups use) of rack r1, epoch 1."""
    row: dict[str, Any] = {
        "rack_id": "r1",
        "boot_epoch": 1,
        "frame_seq": seq,
        "sampled_at": at(second),
        "bus_w": 20000.0,
        "battery_soc": 0.5,
        "in_eclipse": False,
        "radiator_c": 10.0,
        "coolant_inlet_c": 20.0,
        "coolant_outlet_c": 30.0,
        "seu_count": 0,
    }
    return row | values


def gpus(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=GPU_SCHEMA)


def racks(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=RACK_SCHEMA)


def incs(frame: pl.DataFrame, counter: str = "ecc_sbe") -> list[int | None]:
    result = counter_increments(frame, [counter], GPU_KEYS)
    return list(result[f"{counter}_inc"])


def with_gpu_incs(frame: pl.DataFrame) -> pl.DataFrame:
    return counter_increments(frame, GPU_COUNTERS, GPU_KEYS)


# --- counter increments ----------------------------------------------------------------------------


def test_increments_are_differences_and_the_first_sample_counts_from_boot() -> None:
    frame = gpus(*(gpu_row(s, s, ecc_sbe=v) for s, v in [(3, 4), (4, 6), (5, 6), (6, 9)]))
    assert incs(frame) == [4, 2, 0, 3]


def test_increments_restart_with_the_counter_after_a_reboot() -> None:
    frame = gpus(
        gpu_row(10, 0, ecc_dbe=7),
        gpu_row(11, 1, ecc_dbe=9),
        gpu_row(0, 5, boot_epoch=2, ecc_dbe=1),
        gpu_row(1, 6, boot_epoch=2, ecc_dbe=4),
    )
    assert incs(frame, "ecc_dbe") == [7, 2, 1, 3]


def test_a_reset_without_reboot_counts_the_new_value() -> None:
    frame = gpus(*(gpu_row(s, s, nvlink_errors=v) for s, v in [(0, 5), (1, 8), (2, 2), (3, 3)]))
    assert incs(frame, "nvlink_errors") == [5, 3, 2, 1]


def test_lookback_rows_give_previous_values_and_are_dropped() -> None:
    frame = gpus(gpu_row(9, 0, ecc_sbe=5), gpu_row(10, 1, ecc_sbe=7), gpu_row(11, 2, ecc_sbe=9))
    frame = frame.with_columns(lookback=pl.Series([True, False, False]))
    result = counter_increments(frame, ["ecc_sbe"], GPU_KEYS)
    assert result["frame_seq"].to_list() == [10, 11]
    assert result["ecc_sbe_inc"].to_list() == [2, 2]
    assert "lookback" not in result.columns


def test_a_null_reading_has_no_increment_and_the_next_counts_from_the_last_known_value() -> None:
    frame = gpus(gpu_row(0, 0, ecc_sbe=3), gpu_row(1, 1, ecc_sbe=None), gpu_row(2, 2, ecc_sbe=6))
    assert incs(frame) == [3, None, 3]


def test_entities_are_independent_and_input_order_does_not_matter() -> None:
    frame = gpus(
        gpu_row(1, 1, gpu=1, ecc_sbe=10),
        gpu_row(1, 1, ecc_sbe=4),
        gpu_row(0, 0, gpu=1, ecc_sbe=8),
        gpu_row(0, 0, ecc_sbe=1),
    )
    result = counter_increments(frame, ["ecc_sbe"], GPU_KEYS)
    rows = result.select("gpu", "frame_seq", "ecc_sbe_inc").rows()
    assert rows == [(1, 1, 2), (0, 1, 3), (1, 0, 8), (0, 0, 1)]  # input order kept


def test_missing_columns_are_a_shape_error() -> None:
    with pytest.raises(FrameShapeError, match="ecc_sbe"):
        counter_increments(gpus().drop("ecc_sbe"), ["ecc_sbe"], GPU_KEYS)


def test_late_frames_touch_their_window_and_the_next_present_frames_window() -> None:
    keys: dict[str, Any] = {"rack_id": pl.String, "boot_epoch": pl.Int32, "frame_seq": pl.Int64, "sampled_at": TS}
    stored = pl.DataFrame(
        {"rack_id": ["r1", "r2"], "boot_epoch": [1, 3], "frame_seq": [30, 359], "sampled_at": [at(30), at(359)]},
        schema=keys,
    )
    following = pl.DataFrame(
        {"rack_id": ["r1"], "boot_epoch": [1], "frame_seq": [70], "sampled_at": [at(70)]}, schema=keys
    )
    minutes = windows_touched_by_late_frames(stored, following, "1m")
    assert minutes.rows() == [("r1", at(0)), ("r1", at(60)), ("r2", at(300))]
    hours = windows_touched_by_late_frames(stored, following, "1h")
    assert hours.rows() == [("r1", at(0)), ("r2", at(0))]


# --- GPU rollups -------------------------------------------------------------------------------------


def test_gpu_rollup_of_one_minute_by_hand() -> None:
    frame = gpus(
        gpu_row(0, 0, util_pct=10.0, power_w=100.0, temp_c=50.0, hbm_temp_c=60.0, mem_used_mib=1000,
                ecc_sbe=2, throttle_reasons=0x48, tenant="acme"),
        gpu_row(1, 1, util_pct=30.0, power_w=200.0, temp_c=None, hbm_temp_c=64.0, mem_used_mib=3000,
                ecc_sbe=5, ecc_dbe=1, xid=79, throttle_reasons=0x20, row_remap_pending=True, tenant="acme"),
        gpu_row(2, 2, util_pct=None, power_w=300.0, temp_c=70.0, hbm_temp_c=68.0, mem_used_mib=2000,
                ecc_sbe=5, ecc_dbe=1, nvlink_errors=4, throttle_reasons=0x88, invalid_mask=1),
        gpu_row(3, 61, util_pct=90.0, ecc_sbe=6, ecc_dbe=1, nvlink_errors=4),
    )  # fmt: skip
    first, second = gpu_rollups(with_gpu_incs(frame)).to_dicts()
    assert first == {
        "rack_id": "r1", "node": 0, "gpu": 0, "window_start": at(0),
        "samples": 3, "expected_s": 60, "coverage": pytest.approx(3 / 60),
        "util_mean": 20.0, "util_max": 30.0, "util_readings": 2,
        "power_mean": 200.0, "power_max": 300.0, "power_readings": 3,
        "temp_mean": 60.0, "temp_max": 70.0, "temp_readings": 2,
        "hbm_temp_mean": 64.0, "hbm_temp_max": 68.0, "hbm_temp_readings": 3,
        "mem_used_mean": 2000.0, "mem_used_max": 3000.0, "mem_used_readings": 3,
        "util_mean_covered": pytest.approx(1.0),
        "ecc_sbe_inc": 5, "ecc_dbe_inc": 1, "nvlink_inc": 4, "xid_count": 1,
        "throttled_s_hw_slowdown": 2, "throttled_s_sw_thermal": 1,
        "throttled_s_hw_thermal": 1, "throttled_s_power_brake": 1,
        "row_remap_pending": True, "busy_s": 2, "xids": [79],
        "last_epoch": 1, "last_seq": 2, "ecc_sbe_last": 5, "ecc_dbe_last": 1, "nvlink_errors_last": 4,
    }  # fmt: skip
    assert (second["window_start"], second["samples"], second["util_mean"]) == (at(60), 1, 90.0)
    assert (second["ecc_sbe_inc"], second["ecc_dbe_inc"], second["nvlink_inc"]) == (1, 0, 0)
    assert (second["row_remap_pending"], second["busy_s"], second["xid_count"]) == (False, 0, 0)


def test_coverage_with_gaps_keeps_util_mean_and_exposes_the_known_part() -> None:
    present = [s for s in range(60) if not 20 <= s < 35]  # 45 of 60 seconds
    frame = gpus(*(gpu_row(s, s, util_pct=80.0) for s in present))
    (row,) = gpu_rollups(with_gpu_incs(frame)).to_dicts()
    assert (row["samples"], row["coverage"], row["util_mean"], row["util_mean_covered"]) == (45, 0.75, 80.0, 60.0)


def test_hourly_gpu_rollup_expects_3600_samples() -> None:
    frame = gpus(gpu_row(0, 0, util_pct=40.0), gpu_row(1, 1800, util_pct=60.0))
    (row,) = gpu_rollups(with_gpu_incs(frame), every="1h").to_dicts()
    assert (row["samples"], row["expected_s"], row["util_mean"]) == (2, 3600, 50.0)
    assert row["coverage"] == pytest.approx(2 / 3600)


def test_a_window_across_a_reboot_sums_both_epochs_increments() -> None:
    frame = gpus(
        gpu_row(100, 0, ecc_sbe=10),
        gpu_row(101, 1, ecc_sbe=12),
        gpu_row(0, 30, boot_epoch=2, ecc_sbe=3),
        gpu_row(1, 31, boot_epoch=2, ecc_sbe=4),
    )
    (row,) = gpu_rollups(with_gpu_incs(frame)).to_dicts()
    assert row["ecc_sbe_inc"] == 10 + 2 + 3 + 1


# --- rack rollups ------------------------------------------------------------------------------------


def two_gpu_rack() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rack r1, GPUs (0,0) and (0,1), frames at seconds 0, 1 and 60 (seconds 2-59 lost)."""
    samples = gpus(
        gpu_row(0, 0, util_pct=10.0, power_w=100.0, ecc_sbe=1, tenant="a"),
        gpu_row(1, 1, util_pct=20.0, power_w=200.0, ecc_sbe=1, throttle_reasons=0x40),
        gpu_row(2, 60, util_pct=70.0, power_w=100.0, ecc_sbe=3),
        gpu_row(0, 0, gpu=1, util_pct=60.0, power_w=400.0, tenant="b"),
        gpu_row(1, 1, gpu=1, util_pct=None, power_w=500.0, xid=48, row_remap_pending=True, tenant="b"),
        gpu_row(2, 60, gpu=1, util_pct=None, power_w=None),
    )
    frames = racks(
        rack_row(0, 0, seu_count=4, bus_w=1000.0, in_eclipse=True, radiator_c=5.0),
        rack_row(1, 1, seu_count=6, bus_w=3000.0, in_eclipse=False, radiator_c=15.0),
        rack_row(2, 60, seu_count=1, bus_w=2000.0, in_eclipse=True, radiator_c=None),
    )
    return samples, frames


def test_rack_minute_rollups_by_hand() -> None:
    samples, frames = two_gpu_rack()
    rack_incs = counter_increments(frames, ["seu_count"], ["rack_id"])
    first, second = rack_rollups(gpu_rollups(with_gpu_incs(samples)), rack_incs, "1m").to_dicts()
    assert (first["frames"], first["expected_s"], first["coverage"]) == (2, 60, pytest.approx(2 / 60))
    assert (first["gpus"], first["gpu_samples"], first["util_readings"]) == (2, 4, 3)
    assert first["util_mean"] == pytest.approx((10 + 20 + 60) / 3)
    assert first["util_mean_covered"] == pytest.approx(30 * 2 / 60)
    assert (first["util_max"], first["power_mean"], first["power_max"]) == (60.0, 300.0, 500.0)
    assert (first["ecc_sbe_inc"], first["xid_count"], first["busy_s"]) == (1, 1, 3)
    assert (first["throttled_s_hw_thermal"], first["row_remap_pending_gpus"]) == (1, 1)
    assert (first["seu_inc"], first["bus_w_mean"], first["bus_w_max"]) == (6, 2000.0, 3000.0)
    assert (first["in_eclipse_fraction"], first["radiator_c_mean"]) == (0.5, 10.0)
    # Seconds 60: the rack counter went down without a reboot (counts 1); GPU (0,1) had no valid util.
    assert (second["frames"], second["gpus"], second["util_mean"], second["util_readings"]) == (1, 2, 70.0, 1)
    assert (second["seu_inc"], second["ecc_sbe_inc"], second["power_mean"]) == (1, 2, 100.0)
    assert (second["radiator_c_mean"], second["radiator_c_max"], second["in_eclipse_fraction"]) == (None, None, 1.0)


def test_rack_hour_rollup_combines_minutes_weighted_by_readings() -> None:
    samples, frames = two_gpu_rack()
    rack_incs = counter_increments(frames, ["seu_count"], ["rack_id"])
    (hour,) = rack_rollups(gpu_rollups(with_gpu_incs(samples)), rack_incs, "1h").to_dicts()
    assert (hour["window_start"], hour["frames"], hour["expected_s"]) == (at(0), 3, 3600)
    assert hour["coverage"] == pytest.approx(3 / 3600)
    assert hour["util_mean"] == pytest.approx((10 + 20 + 60 + 70) / 4)
    assert (hour["util_readings"], hour["power_readings"], hour["power_mean"]) == (4, 5, 260.0)
    assert (hour["seu_inc"], hour["ecc_sbe_inc"], hour["gpus"], hour["gpu_samples"]) == (7, 3, 2, 6)
    assert hour["in_eclipse_fraction"] == pytest.approx(2 / 3)


# --- usage ---------------------------------------------------------------------------------------------


def test_tenant_gpu_hours_count_tenant_seconds_and_exclude_idle() -> None:
    samples = gpus(
        gpu_row(0, 0, tenant="a"),
        gpu_row(1, 1, tenant="a"),
        gpu_row(2, 2, tenant=None),
        gpu_row(0, 0, gpu=1, tenant="a"),
        gpu_row(0, 0, rack_id="r2", tenant="b"),
        gpu_row(3, 3600, tenant="a"),
    )
    usage = tenant_usage_hourly(samples)
    assert usage.drop("gpu_hours").rows() == [("a", at(0), 3, 1, 2), ("a", at(3600), 1, 1, 1), ("b", at(0), 1, 1, 1)]
    assert usage["gpu_hours"].to_list() == pytest.approx([3 / 3600, 1 / 3600, 1 / 3600])


def test_a_full_hour_of_one_gpu_is_one_gpu_hour() -> None:
    samples = gpus(*(gpu_row(s, s, tenant="a") for s in range(3600)))
    assert tenant_usage_hourly(samples).rows() == [("a", at(0), 3600, 1.0, 1, 1)]


def test_fleet_utilization_by_hand() -> None:
    rollups = pl.DataFrame(
        {
            "rack_id": ["r1", "r2", "r1"],
            "window_start": [at(0), at(0), at(60)],
            "frames": [60, 30, 60],
            "expected_s": [60, 60, 60],
            "gpus": [64, 64, 64],
            "util_mean": [50.0, 80.0, None],
            "util_readings": [3840, 1920, 0],
            "busy_s": [3840, 0, 100],
        },
        schema_overrides={"window_start": TS},
    )
    first, second = fleet_utilization(rollups).to_dicts()
    assert first == {
        "window_start": at(0), "racks_reporting": 2, "gpus_reporting": 128,
        "util_mean": 60.0, "coverage": 0.75, "busy_gpu_s": 3840, "capacity_gpu_s": 7680,
        "util_mean_covered": 45.0,
    }  # fmt: skip
    assert (second["util_mean"], second["coverage"], second["util_mean_covered"]) == (None, 1.0, None)


# --- properties: window-by-window equals all at once; input order does not matter ----------------------


@dataclass
class Telemetry:
    """Generated history of rack r1 with two GPUs: rack frames and GPU samples, as stored rows."""

    gpu_rows: list[dict[str, Any]] = field(default_factory=list)
    rack_rows: list[dict[str, Any]] = field(default_factory=list)

    def gpus(self) -> pl.DataFrame:
        return gpus(*self.gpu_rows)

    def racks(self) -> pl.DataFrame:
        return racks(*self.rack_rows)


COUNTER_STEP = st.tuples(st.integers(0, 3), st.booleans(), st.booleans())  # delta, reset, unreadable


@st.composite
def telemetry(draw: st.DrawFn) -> Telemetry:
    """Up to 200 s from second 30 on: lost frames and GPU samples, reboots, resets, NULL readings."""
    history = Telemetry()
    epoch, seq, second = 1, 0, 30
    counters = dict.fromkeys([*GPU_COUNTERS, "seu_count"], 0)
    for _ in range(draw(st.integers(1, 40))):
        second += draw(st.integers(1, 12))
        if draw(st.integers(0, 9)) == 0:  # reboot: frame_seq and every counter restart
            epoch, seq = epoch + 1, 0
            counters = dict.fromkeys(counters, 0)
        values: dict[str, int | None] = {}
        for name in counters:
            delta, reset, unreadable = draw(COUNTER_STEP)
            counters[name] = delta if reset and draw(st.integers(0, 4)) == 0 else counters[name] + delta
            values[name] = None if unreadable and draw(st.integers(0, 4)) == 0 else counters[name]
        if draw(st.booleans()) or seq == 0:
            frame = {"boot_epoch": epoch, "frame_seq": seq}
            history.rack_rows.append(rack_row(seq, second, boot_epoch=epoch, seu_count=values["seu_count"]))
            for gpu in draw(st.sets(st.integers(0, 1), min_size=1)):
                util = draw(st.one_of(st.none(), st.integers(0, 100).map(float)))
                gpu_values = {name: values[name] for name in GPU_COUNTERS}
                row = gpu_row(seq, second, gpu=gpu, util_pct=util, throttle_reasons=draw(st.sampled_from([0, 8, 0x60])))
                history.gpu_rows.append(row | frame | gpu_values)
        seq += 1
    return history


def lookback_rows(
    rows: list[dict[str, Any]], keys: list[str], counters: list[str], start: datetime
) -> list[dict[str, Any]]:
    """Per entity, its last row before ``start`` with each counter replaced by the epoch's last known value."""
    last: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["boot_epoch"], r["frame_seq"])):
        if row["sampled_at"] >= start:
            continue
        entity = tuple(row[k] for k in keys)
        previous = last.get(entity)
        known = dict(row)
        for name in counters:
            if known[name] is None and previous is not None and previous["boot_epoch"] == row["boot_epoch"]:
                known[name] = previous[name]
        last[entity] = known
    return [row | {"lookback": True} for row in last.values()]


def windowed(
    rows: list[dict[str, Any]], schema: dict[str, Any], keys: list[str], counters: list[str]
) -> list[pl.DataFrame]:
    """Each minute's input on its own: its rows plus one lookback row per entity, with increments."""
    starts = sorted({row["sampled_at"].replace(second=0) for row in rows})
    inputs = []
    for start in starts:
        own = [row | {"lookback": False} for row in rows if start <= row["sampled_at"] < start + timedelta(minutes=1)]
        frame = pl.DataFrame(own + lookback_rows(rows, keys, counters, start), schema=schema | {"lookback": pl.Boolean})
        inputs.append(counter_increments(frame, counters, keys))
    return inputs


def rollups(gpu_incs: pl.DataFrame, rack_incs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    minutes = gpu_rollups(gpu_incs)
    return minutes, rack_rollups(minutes, rack_incs, "1m")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=telemetry())
def test_window_by_window_with_lookback_equals_all_at_once(history: Telemetry) -> None:
    gpu_all, rack_all = rollups(
        with_gpu_incs(history.gpus()), counter_increments(history.racks(), ["seu_count"], ["rack_id"])
    )
    gpu_windows = windowed(history.gpu_rows, GPU_SCHEMA, GPU_KEYS, GPU_COUNTERS)
    rack_windows = windowed(history.rack_rows, RACK_SCHEMA, ["rack_id"], ["seu_count"])
    pieces = [rollups(g, r) for g, r in zip(gpu_windows, rack_windows, strict=True)]
    gpu_pieces = pl.concat([g for g, _ in pieces]).sort([*GPU_KEYS, "window_start"])
    rack_pieces = pl.concat([r for _, r in pieces]).sort("rack_id", "window_start")
    assert_frame_equal(gpu_pieces, gpu_all)
    assert_frame_equal(rack_pieces, rack_all)
    assert gpu_all["samples"].sum() == len(history.gpu_rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=telemetry(), seed=st.integers(0, 2**32 - 1))
def test_shuffled_samples_give_identical_rollups(history: Telemetry, seed: int) -> None:
    samples, frames = history.gpus(), history.racks()
    shuffled = samples.sample(fraction=1.0, shuffle=True, seed=seed)
    shuffled_frames = frames.sample(fraction=1.0, shuffle=True, seed=seed)
    expected = rollups(with_gpu_incs(samples), counter_increments(frames, ["seu_count"], ["rack_id"]))
    actual = rollups(with_gpu_incs(shuffled), counter_increments(shuffled_frames, ["seu_count"], ["rack_id"]))
    assert_frame_equal(actual[0], expected[0], check_exact=True)
    assert_frame_equal(actual[1], expected[1], check_exact=True)
    assert_frame_equal(tenant_usage_hourly(shuffled), tenant_usage_hourly(samples), check_exact=True)


def changed_windows(before: pl.DataFrame, after: pl.DataFrame) -> set[tuple[str, datetime]]:
    """``(rack_id, window_start)`` of the rollup rows that differ between two computations."""
    key = (before.columns.index("rack_id"), before.columns.index("window_start"))

    def hashable(frame: pl.DataFrame) -> set[tuple[Any, ...]]:
        return {tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in frame.rows()}

    return {(row[key[0]], row[key[1]]) for row in hashable(before) ^ hashable(after)}


def next_readable(
    rows: list[dict[str, Any]], late: dict[str, Any], keys: list[str], counters: list[str]
) -> list[dict[str, Any]]:
    """Per counter, the next row after ``late`` of the same entity and epoch with a reading of it, if any."""
    same = [
        row
        for row in rows
        if all(row[k] == late[k] for k in keys)
        and row["boot_epoch"] == late["boot_epoch"]
        and row["frame_seq"] > late["frame_seq"]
    ]
    readable = ([row for row in same if row[name] is not None] for name in counters)
    return [min(found, key=lambda row: row["frame_seq"]) for found in readable if found]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=telemetry(), pick=st.integers(0, 10_000))
def test_a_late_frame_changes_only_the_windows_it_touches(history: Telemetry, pick: int) -> None:
    late = history.rack_rows[pick % len(history.rack_rows)]
    frame_key = ("boot_epoch", "frame_seq")

    def is_late(row: dict[str, Any]) -> bool:
        return all(row[k] == late[k] for k in frame_key)

    early = Telemetry([r for r in history.gpu_rows if not is_late(r)], [r for r in history.rack_rows if not is_late(r)])
    before = rollups(with_gpu_incs(early.gpus()), counter_increments(early.racks(), ["seu_count"], ["rack_id"]))
    after = rollups(with_gpu_incs(history.gpus()), counter_increments(history.racks(), ["seu_count"], ["rack_id"]))
    following = next_readable(history.rack_rows, late, ["rack_id"], ["seu_count"])
    for sample in (r for r in history.gpu_rows if is_late(r)):  # frames may lack GPUs or readings
        following += next_readable(history.gpu_rows, sample, GPU_KEYS, GPU_COUNTERS)
    columns = ["rack_id", "boot_epoch", "frame_seq", "sampled_at"]
    touched = windows_touched_by_late_frames(
        racks(late).select(columns), racks(*(rack_row(0, 0) | {k: r[k] for k in columns} for r in following)), "1m"
    )
    allowed = set(touched.rows())
    assert changed_windows(before[0], after[0]) <= allowed
    assert changed_windows(before[1], after[1]) <= allowed
    assert (late["rack_id"], late["sampled_at"].replace(second=0)) in changed_windows(before[1], after[1])


def test_an_increment_across_a_hole_longer_than_the_horizon_is_unknown() -> None:
    # seq 700 comes 700 s after seq 0: no reading within 10 minutes before it, and the epoch began more
    # than 10 minutes earlier, so what the counter did in between is unknown (NULL), not 9 from boot.
    frame = gpus(gpu_row(0, 0, ecc_sbe=2), gpu_row(700, 700, ecc_sbe=9), gpu_row(701, 701, ecc_sbe=10))
    assert incs(frame) == [2, None, 1]


def test_a_first_sample_within_the_horizon_of_boot_counts_from_zero() -> None:
    # Frames 0-299 lost: seq 300 is 5 minutes after boot, so its reading is everything since boot.
    assert incs(gpus(gpu_row(300, 300, ecc_sbe=4), gpu_row(301, 301, ecc_sbe=4))) == [4, 0]


def test_a_lookback_row_older_than_the_horizon_is_not_used() -> None:
    frame = gpus(gpu_row(100, 0, ecc_sbe=5), gpu_row(800, 11 * 60 + 40, ecc_sbe=7))
    frame = frame.with_columns(lookback=pl.Series([True, False]))
    assert counter_increments(frame, ["ecc_sbe"], GPU_KEYS)["ecc_sbe_inc"].to_list() == [None]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=telemetry(), seed=st.integers(0, 2**32 - 1))
def test_lookback_state_read_off_the_sorted_rows_equals_the_aggregated_one(history: Telemetry, seed: int) -> None:
    samples = history.gpus().sample(fraction=1.0, shuffle=True, seed=seed)
    incs, state = increments_and_state(samples, GPU_COUNTERS, GPU_KEYS)
    fast = gpu_rollups(incs, state=state)
    assert_frame_equal(fast, gpu_rollups(incs), check_column_order=False, check_exact=True)
    frames = history.racks()
    rack_incs, rack_state = increments_and_state(frames, ["seu_count"], ["rack_id"])
    assert_frame_equal(
        rack_rollups(fast, rack_incs, "1m", state=rack_state),
        rack_rollups(fast, rack_incs, "1m"),
        check_column_order=False,
        check_exact=True,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=telemetry(), tenants=st.lists(st.sampled_from(["a", "b", None]), min_size=1, max_size=8))
def test_tenant_usage_from_gpu_minutes_equals_usage_from_samples(history: Telemetry, tenants: list[str | None]) -> None:
    samples = history.gpus().with_columns(
        pl.Series("tenant", [tenants[i % len(tenants)] for i in range(len(history.gpu_rows))], dtype=pl.String)
    )
    minutes = gpu_rollups(with_gpu_incs(samples), extra=TENANT_BOUNDS)
    assert_frame_equal(tenant_minutes(samples, minutes), tenant_minutes(samples), check_exact=True)
