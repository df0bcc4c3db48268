"""Health model: one small hand-made input per rule, links (stale vs predicted loss of signal), worst-of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from processing.errors import FrameShapeError
from processing.health import fleet_health_now, gpu_health, node_health, rack_health
from processing.passes import contact_at, empty_link_state, expected_contact, update_link_state

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
NEXT = T + timedelta(minutes=80)


def gpu_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "rack_id": "r", "node": 0, "gpu": 0, "window_start": T, "samples": 60, "coverage": 1.0,
        "temp_max": 70.0, "hbm_temp_max": 80.0, "throttled_s_hw_thermal": 0.0, "throttled_s_power_brake": 0.0,
        "throttled_s_hw_slowdown": 0.0, "throttled_s_sw_thermal": 0.0, "ecc_dbe_inc": 0, "ecc_sbe_inc": 0,
        "row_remap_pending": False, "xids": [],
    }  # fmt: skip
    return row | overrides


def gpus(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema_overrides={"xids": pl.List(pl.Int64)})


def rack_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "rack_id": "r", "window_start": T, "coverage": 1.0, "seu_inc": 2, "radiator_c_max": 10.0,
        "coolant_outlet_c_max": 30.0, "battery_soc_min": 0.8, "in_eclipse_fraction": 0.0,
        "last_frame_at": T + timedelta(seconds=59), "as_of": T + timedelta(seconds=60),
        "in_contact_expected": True, "expected_frame_interval_s": 1.0, "predicted_next_contact": NEXT,
    }  # fmt: skip
    return row | overrides


def racks(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows))


NO_NODES = node_health(gpu_health(gpus(gpu_row())).clear())


@pytest.mark.parametrize(
    ("overrides", "state", "reason"),
    [
        ({}, "ok", None),
        ({"temp_max": 84.0}, "degraded", "gpu temp 84.0 C >= degraded 83 C"),
        ({"temp_max": 91.2}, "critical", "gpu temp 91.2 C >= critical 90 C"),
        ({"hbm_temp_max": 92.0}, "degraded", "hbm temp 92.0 C >= degraded 90 C"),
        ({"hbm_temp_max": 95.0}, "critical", "hbm temp 95.0 C >= critical 95 C"),
        ({"throttled_s_hw_thermal": 5.0}, "degraded", "hw thermal throttling 5.0 s"),
        ({"throttled_s_hw_thermal": 31.0}, "critical", "hw thermal throttling 31.0 s (52.0%"),
        ({"throttled_s_power_brake": 1.0}, "degraded", "power brake throttling"),
        ({"throttled_s_power_brake": 60.0}, "critical", "power brake throttling 60.0 s (100.0%"),
        ({"throttled_s_hw_slowdown": 60.0}, "degraded", "hw slowdown throttling"),
        ({"throttled_s_sw_thermal": 60.0}, "ok", "sw thermal (noted)"),
        ({"ecc_dbe_inc": 1}, "critical", "ecc double-bit errors +1"),
        ({"row_remap_pending": True}, "critical", "hbm row remap pending"),
        ({"ecc_sbe_inc": 10}, "degraded", "ecc single-bit rate 600.0/h > 10/h"),
        ({"ecc_sbe_inc": 9}, "ok", None),  # fewer than ecc_sbe_min_errors: background, not a rising rate
        ({"samples": 3600, "ecc_sbe_inc": 10}, "ok", None),
        ({"xids": [48]}, "critical", "critical xid 48"),
        ({"xids": [64, 63]}, "critical", "critical xid 63, 64"),
        ({"xids": [79]}, "critical", "critical xid 79"),
        ({"xids": [74]}, "degraded", "nvlink xid 74"),
        ({"xids": [13, 31, 43]}, "ok", "application xid (noted) 13, 31, 43"),
        ({"xids": [99]}, "degraded", "unclassified xid 99"),
        ({"samples": 0, "coverage": 0.0, "temp_max": None}, "unknown", "no samples in window"),
    ],
)
def test_gpu_rule(overrides: dict[str, Any], state: str, reason: str | None) -> None:
    [result] = gpu_health(gpus(gpu_row(**overrides))).to_dicts()
    assert result["state"] == state
    if reason is None:
        assert result["reasons"] == []
    else:
        assert any(reason in r for r in result["reasons"]), result["reasons"]


def test_missing_columns_raise_frame_shape_error() -> None:
    with pytest.raises(FrameShapeError, match=r"\['temp_max', 'xids'\]"):
        gpu_health(gpus(gpu_row()).drop("temp_max", "xids"))
    with pytest.raises(FrameShapeError, match="seu_inc"):
        rack_health(racks(rack_row()).drop("seu_inc"), NO_NODES)


def test_node_is_worst_of_its_gpus_and_carries_reasons() -> None:
    window = gpus(gpu_row(gpu=0), gpu_row(gpu=1, temp_max=85.0), gpu_row(gpu=2, ecc_dbe_inc=2))
    [node] = node_health(gpu_health(window)).to_dicts()
    assert node["state"] == "critical"
    assert node["reasons"] == ["gpu 1: gpu temp 85.0 C >= degraded 83 C", "gpu 2: ecc double-bit errors +2"]


def test_unknown_children_do_not_hide_known_ones() -> None:
    no_data = {"samples": 0, "coverage": 0.0}
    [mixed] = node_health(gpu_health(gpus(gpu_row(gpu=0), gpu_row(gpu=1, **no_data)))).to_dicts()
    assert (mixed["state"], mixed["reasons"]) == ("ok", ["gpu 1: no samples in window"])
    [blind] = node_health(gpu_health(gpus(gpu_row(gpu=0, **no_data)))).to_dicts()
    assert blind["state"] == "unknown"


def test_rack_is_worst_of_its_nodes_and_own_rules() -> None:
    nodes = node_health(gpu_health(gpus(gpu_row(node=0), gpu_row(node=3, gpu=5, temp_max=84.0))))
    [rack] = rack_health(racks(rack_row(radiator_c_max=31.0)), nodes).to_dicts()
    assert rack["state"] == "degraded"
    assert rack["reasons"] == ["radiator 31.0 C > degraded 30 C", "node 3: gpu 5: gpu temp 84.0 C >= degraded 83 C"]
    [worse] = rack_health(racks(rack_row()), node_health(gpu_health(gpus(gpu_row(xids=[79]))))).to_dicts()
    assert (worse["state"], worse["reasons"]) == ("critical", ["node 0: gpu 0: critical xid 79"])


@pytest.mark.parametrize(
    ("overrides", "state", "reason"),
    [
        ({}, "ok", None),
        ({"radiator_c_max": 46.0}, "critical", "radiator 46.0 C > critical 45 C"),
        ({"coolant_outlet_c_max": 41.0}, "degraded", "coolant outlet 41.0 C > degraded 40 C"),
        ({"coolant_outlet_c_max": 51.0}, "critical", "coolant outlet 51.0 C > critical 50 C"),
        ({"battery_soc_min": 0.15, "in_eclipse_fraction": 0.5}, "degraded", "battery soc 0.15 in eclipse < degraded"),
        ({"battery_soc_min": 0.05, "in_eclipse_fraction": 1.0}, "critical", "battery soc 0.05 in eclipse < critical"),
        ({"battery_soc_min": 0.05, "in_eclipse_fraction": 0.0}, "ok", None),
        ({"last_frame_at": T, "as_of": T + timedelta(seconds=150)}, "degraded", "stale: no frame for 150 s"),
        ({"last_frame_at": T, "as_of": T + timedelta(seconds=100)}, "ok", None),  # under the 120 s floor
        ({"last_frame_at": T, "as_of": T + timedelta(seconds=150), "in_contact_expected": False}, "ok", None),
    ],
)
def test_rack_rule(overrides: dict[str, Any], state: str, reason: str | None) -> None:
    [result] = rack_health(racks(rack_row(**overrides)), NO_NODES).to_dicts()
    assert result["state"] == state
    assert (result["reasons"] == []) if reason is None else any(reason in r for r in result["reasons"])


@pytest.mark.parametrize(
    ("seu", "state", "ratio"), [(10, "ok", None), (200, "degraded", "20.9"), (600, "critical", "60.9")]
)
def test_seu_rate_is_judged_against_the_racks_own_norm(seu: int, state: str, ratio: str | None) -> None:
    # 15 minutes at 1 SEU/min, then `seu` in the 16th. Recent rate: (9 x 1 + seu) / 10 minutes; the norm is
    # the mean of the minutes before those 10 (minutes 0-5): 1.0/min. So the ratio is (9 + seu) / 10.
    history = [rack_row(window_start=T + timedelta(minutes=i), seu_inc=1) for i in range(15)]
    latest = rack_row(window_start=T + timedelta(minutes=15), seu_inc=seu)
    result = rack_health(racks(*history, latest), NO_NODES)
    assert result["state"].to_list() == ["ok"] * 15 + [state]
    if ratio is not None:
        assert f"= {ratio}x the rack's norm 1.0/min" in result["reasons"][-1][0]


def test_seu_rate_counts_observed_minutes_only() -> None:
    # Half-covered minutes with 1 SEU each are 2 SEUs per observed minute, like full minutes with 2.
    half = [rack_row(window_start=T + timedelta(minutes=i), seu_inc=1, coverage=0.5) for i in range(16)]
    full = [rack_row(window_start=T + timedelta(minutes=i), seu_inc=2) for i in range(16)]
    assert rack_health(racks(*half), NO_NODES)["state"].to_list() == ["ok"] * 16
    assert rack_health(racks(*half[:-1], half[-1] | {"seu_inc": 200}), NO_NODES)["state"][-1] == "degraded"
    assert rack_health(racks(*full), NO_NODES)["state"].to_list() == ["ok"] * 16


def test_no_frames_during_predicted_loss_of_signal_is_unknown_not_critical() -> None:
    silent = {"coverage": 0.0, "seu_inc": None, "radiator_c_max": None, "last_frame_at": T - timedelta(hours=1)}
    [los] = rack_health(racks(rack_row(**silent, in_contact_expected=False)), NO_NODES).to_dicts()
    assert los["state"] == "unknown"
    assert "predicted loss of signal" in los["reasons"][0]
    [stale] = rack_health(racks(rack_row(**silent)), NO_NODES).to_dicts()
    assert stale["state"] == "degraded"
    assert stale["reasons"][0].startswith("stale: no frame for 3660 s")


def live_history(pass_starts: list[datetime], seconds: int = 300) -> pl.DataFrame:
    received = [s + timedelta(seconds=i) for s in pass_starts for i in range(seconds)]
    return pl.DataFrame(
        {"rack_id": "r", "received_at": received, "stored": False, "sampled_at": received},
        schema_overrides={"received_at": pl.Datetime("us", "UTC"), "sampled_at": pl.Datetime("us", "UTC")},
    )


def test_expected_contact_learns_passes_from_live_frames() -> None:
    history = live_history([T, T + timedelta(minutes=90), T + timedelta(minutes=185)])
    during = expected_contact(history, T + timedelta(minutes=186)).row(0, named=True)
    assert during["in_contact_expected"]
    assert during["passes_seen"] == 3
    assert during["pass_interval_s"] == pytest.approx(92.5 * 60)
    between = expected_contact(history, T + timedelta(minutes=230)).row(0, named=True)
    assert not between["in_contact_expected"]
    assert between["predicted_next_contact"] == T + timedelta(minutes=277.5)
    overdue = expected_contact(history, T + timedelta(minutes=283)).row(0, named=True)
    assert overdue["in_contact_expected"]
    one_pass = expected_contact(history, T + timedelta(minutes=30)).row(0, named=True)
    assert one_pass["predicted_next_contact"] == T + timedelta(seconds=5760)


def test_fleet_now_keeps_the_last_known_state_through_loss_of_signal() -> None:
    history = live_history([T, T + timedelta(minutes=90)], seconds=60)
    windows = racks(rack_row(window_start=T + timedelta(minutes=90)))
    hot = gpus(gpu_row(window_start=T + timedelta(minutes=90), ecc_dbe_inc=1))
    between = fleet_health_now(hot, windows, expected_contact(history, T + timedelta(minutes=120)))
    row = between.row(0, named=True)
    assert (row["state"], row["last_known_state"]) == ("unknown", "critical")
    assert row["reasons"][0].startswith("predicted loss of signal since")
    assert row["reasons"][1] == "last known: node 0: gpu 0: ecc double-bit errors +1"
    overdue = fleet_health_now(hot.clear(), windows.clear(), expected_contact(history, T + timedelta(minutes=200)))
    assert overdue.is_empty()
    cool = gpus(gpu_row(window_start=T + timedelta(minutes=90)))
    stale = fleet_health_now(cool, windows, expected_contact(history, T + timedelta(minutes=186))).row(0, named=True)
    assert stale["state"] == "degraded"
    assert stale["reasons"][0].startswith("stale: no frame for")


def test_link_state_folded_batch_by_batch_equals_all_at_once() -> None:
    history = live_history([T, T + timedelta(minutes=90), T + timedelta(minutes=185)], seconds=120)
    history = history.with_columns(pl.col("received_at").alias("sampled_at"))
    whole = update_link_state(empty_link_state(), history, keep=None)
    state = empty_link_state()
    for batch in history.iter_slices(97):  # batches that cut passes in the middle
        state = update_link_state(state, batch, keep=None)
    assert_frame_equal(state, whole)
    assert whole["passes_seen"].to_list() == [3]
    now = T + timedelta(minutes=230)
    assert_frame_equal(contact_at(state, now), expected_contact(history, now))
    kept = update_link_state(empty_link_state(), history, keep=2)
    assert (kept["passes_seen"].item(), kept["pass_starts"].list.len().item()) == (3, 2)
