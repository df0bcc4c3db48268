"""Unit tests of the fleet simulator: no Kafka needed, every check decodes with fastavro directly."""

from __future__ import annotations

import io
import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import fastavro
import pytest
from pydantic import ValidationError

import simulator.produce as produce_module
from simulator import (
    GROUND_STATIONS,
    FaultSpec,
    GroundTruth,
    SimMessage,
    Simulation,
    SimulationConfig,
    default_contract_dir,
    generate,
)
from simulator.codec import ContractCodec
from simulator.produce import produce

V2_ONLY_FIELDS = ("nvlink_errors", "row_remap_pending")
Frame = dict[str, Any]
Identity = tuple[str, int, int]


def _load_schemas() -> dict[int, Any]:
    contract = default_contract_dir()
    registry: dict[str, str] = json.loads((contract / "registry.json").read_text())
    return {
        int(key): fastavro.parse_schema(json.loads((contract / name).read_text())) for key, name in registry.items()
    }


SCHEMAS = _load_schemas()


def strict_decode(value: bytes) -> tuple[int, Frame] | None:
    """Independent strict decoder: None unless the value is exactly one frame of a known schema."""
    if len(value) < 5 or value[0] != 0:
        return None
    schema_id = int.from_bytes(value[1:5], "big")
    if schema_id not in SCHEMAS:
        return None
    body = io.BytesIO(value[5:])
    try:
        record = fastavro.schemaless_reader(body, SCHEMAS[schema_id], None)
    except Exception:
        return None
    if body.tell() != len(value) - 5 or not isinstance(record, dict):
        return None
    return schema_id, record


@dataclass
class Decoded:
    index: int
    message: SimMessage
    schema_id: int
    frame: Frame

    @property
    def identity(self) -> Identity:
        return (self.frame["rack_id"], self.frame["boot_epoch"], self.frame["frame_seq"])

    @property
    def offset_s(self) -> float:
        return float(self.frame["sampled_at"].timestamp() - START.timestamp())


@dataclass
class Run:
    config: SimulationConfig
    messages: list[SimMessage]
    truth: GroundTruth
    frames: list[Decoded]
    undecodable: list[int]

    def by_rack(self) -> dict[str, list[Decoded]]:
        racks: dict[str, list[Decoded]] = defaultdict(list)
        for item in self.frames:
            racks[item.frame["rack_id"]].append(item)
        return racks


START = datetime(2026, 11, 1, tzinfo=UTC)


def run(**settings: Any) -> Run:
    config = SimulationConfig(**settings)
    messages, truth = generate(config)
    listed = list(messages)
    frames: list[Decoded] = []
    undecodable: list[int] = []
    for index, message in enumerate(listed):
        decoded = strict_decode(message.value)
        if decoded is None:
            undecodable.append(index)
        else:
            frames.append(Decoded(index, message, *decoded))
    return Run(config, listed, truth, frames, undecodable)


@pytest.fixture(scope="module")
def orbital() -> Run:
    """Short orbits, every link effect switched on, two racks."""
    return run(
        satellites=2,
        racks_per_satellite=1,
        duration_s=2400,
        seed=7,
        orbit_period_s=1200,
        max_eclipse_s=420,
        pass_min_s=120,
        pass_max_s=240,
        duplicate_rate=0.05,
        loss_rate=0.01,
        malformed_rate=0.02,
        invalid_value_rate=0.01,
        reboot_rate_per_hour=6,
        v2_fraction=0.5,
        upgrade_fraction=1.0,
    )


@pytest.fixture(scope="module")
def continuous() -> Run:
    return run(
        satellites=1,
        racks_per_satellite=3,
        duration_s=600,
        seed=3,
        contact="continuous",
        loss_rate=0.01,
        duplicate_rate=0.03,
    )


def _nonempty(items: list[Any]) -> list[Any]:
    assert items, "the scenario must exercise this case"
    return items


# --- determinism, encoding -------------------------------------------------------------------------


def _small(seed: int) -> list[SimMessage]:
    settings: dict[str, Any] = {"duration_s": 120, "malformed_rate": 0.05, "invalid_value_rate": 0.05}
    return list(generate(SimulationConfig(seed=seed, contact="continuous", **settings))[0])


def test_same_seed_same_bytes_and_other_seed_differs() -> None:
    first, second, other = _small(11), _small(11), _small(12)
    assert first == second
    assert len(first) > 400
    assert [m.value for m in first] != [m.value for m in other]


def test_fast_gpu_encoder_writes_what_fastavro_writes() -> None:
    codec = ContractCodec()
    rng = random.Random(5)
    for schema_id in (1, 2):
        for _ in range(50):
            gpus = [_random_gpu(rng, n, g) for n in range(8) for g in range(8)]
            tail = {
                "power": {"bus_w": 1.5, "solar_w": 0.0, "battery_soc": 0.5, "in_eclipse": True},
                "thermal": {"radiator_c": -3.0, "coolant_inlet_c": 19.0, "coolant_outlet_c": 25.0},
                "radiation": {"seu_count": rng.randrange(1 << 40), "dose_rate_mrad_h": 1.2},
                "gpus": gpus,
            }
            assert codec.encode_tail(schema_id, tail) == codec.encode_tail(schema_id, tail, fast=False)


def _random_gpu(rng: random.Random, node: int, gpu: int) -> Frame:
    big = rng.choice([0, 1, 63, 64, 8191, 1 << 20, (1 << 62) + 3])
    return {
        "node": node,
        "gpu": gpu,
        "util_pct": rng.uniform(0, 100),
        "mem_used_mib": rng.randrange(81559),
        "mem_total_mib": 81559,
        "power_w": rng.uniform(-5, 700),
        "temp_c": rng.choice([math.nan, rng.uniform(30, 99)]),
        "hbm_temp_c": rng.uniform(30, 99),
        "sm_clock_mhz": rng.randrange(1000, 2000),
        "ecc_sbe": big,
        "ecc_dbe": rng.randrange(3),
        "xid": rng.choice([None, 48, 79, 1 << 30]),
        "nvlink_errors": big,
        "row_remap_pending": rng.random() < 0.5,
        "throttle_reasons": rng.choice([0, 0x20, 0x60]),
        "tenant": rng.choice([None, "acme-ai", "ünïcode-tenant", "x" * 200]),
    }


def test_every_valid_message_decodes_and_matches_the_truth(orbital: Run) -> None:
    truth = orbital.truth
    delivered = truth.delivered_ids()
    invalid = {(r.rack_id, r.boot_epoch, r.frame_seq) for r in truth.invalid_values}
    seen: set[Identity] = set()
    for item in orbital.frames:
        frame = item.frame
        assert item.message.key == frame["rack_id"].encode()
        assert frame["rack_id"].startswith(frame["satellite_id"] + "/rack-")
        assert frame["ground_station"] in GROUND_STATIONS
        assert len(frame["gpus"]) == 64
        assert [(g["node"], g["gpu"]) for g in frame["gpus"]] == [(n, g) for n in range(8) for g in range(8)]
        assert item.identity in delivered or item.identity in invalid
        seen.add(item.identity)
    assert seen == delivered | invalid
    assert len(delivered) == truth.distinct_frames_sent
    assert len(invalid) == truth.invalid_frames_sent
    by_schema = Counter(i.schema_id for i in {i.identity: i for i in orbital.frames}.values())
    assert dict(by_schema) == truth.frames_by_schema_id


def test_kafka_timestamps_are_receive_times(orbital: Run) -> None:
    stamps = [m.timestamp_ms for m in orbital.messages]
    assert stamps == sorted(stamps)
    future = {(r.rack_id, r.boot_epoch, r.frame_seq) for r in orbital.truth.invalid_values}
    for item in orbital.frames:
        received = datetime.fromtimestamp(item.message.timestamp_ms / 1000, UTC)
        delay = (received - item.frame["sampled_at"]).total_seconds()
        if item.identity in future and delay < 0:
            continue
        assert delay >= 0
        if not item.frame["stored"]:
            assert delay < 3


def test_truth_counts_add_up_and_round_trip_json(orbital: Run, tmp_path: Path) -> None:
    truth = orbital.truth
    assert truth.complete
    assert len(orbital.messages) == truth.messages_sent
    assert truth.messages_sent == (
        truth.distinct_frames_sent + truth.invalid_frames_sent + truth.duplicates_sent + truth.malformed_sent
    )
    assert truth.frames_sampled == (
        truth.distinct_frames_sent + truth.invalid_frames_sent + truth.frames_lost + truth.frames_undelivered_on_board
    )
    assert truth.frames_lost == sum(r.count for r in truth.lost) > 0
    assert truth.frames_undelivered_on_board == 0
    assert truth.duplicates_sent > 0
    delivered = truth.delivered_ids()
    for lost in truth.lost:
        assert not any(
            (lost.rack_id, lost.boot_epoch, s) in delivered for s in range(lost.first_seq, lost.last_seq + 1)
        )
    path = tmp_path / "truth.json"
    truth.write_json(path)
    assert GroundTruth.load_json(path) == truth


def test_duplicates_differ_only_in_ground_station(orbital: Run) -> None:
    copies: dict[Identity, list[Decoded]] = defaultdict(list)
    for item in orbital.frames:
        copies[item.identity].append(item)
    duplicated = _nonempty([items for items in copies.values() if len(items) > 1])
    assert sum(len(items) - 1 for items in copies.values()) == orbital.truth.duplicates_sent
    for first, *others in duplicated:
        for other in others:
            assert other.frame["ground_station"] != first.frame["ground_station"]
            # repr() so that a NaN reading (an invalid-value frame) compares equal to itself
            assert repr({**other.frame, "ground_station": None}) == repr({**first.frame, "ground_station": None})
            assert 0 < other.message.timestamp_ms - first.message.timestamp_ms <= 2000


def test_malformed_messages_are_exactly_the_undecodable_ones(orbital: Run) -> None:
    truth = orbital.truth
    assert [m.index_in_stream for m in truth.malformed] == orbital.undecodable
    assert truth.malformed_sent == len(orbital.undecodable)
    kinds = Counter(m.kind for m in truth.malformed)
    assert set(kinds) == {"bad_magic", "unknown_schema_id", "truncated", "trailing_garbage", "garbage_body"}
    for record in truth.malformed:
        value = orbital.messages[record.index_in_stream].value
        if record.kind == "bad_magic":
            assert value[0] != 0
        elif record.kind == "unknown_schema_id":
            assert value[0] == 0
            assert int.from_bytes(value[1:5], "big") not in SCHEMAS
        else:
            assert value[0] == 0
            assert int.from_bytes(value[1:5], "big") in SCHEMAS


def test_invalid_values_are_where_the_truth_says(orbital: Run) -> None:
    listed = {(r.rack_id, r.boot_epoch, r.frame_seq): r.kind for r in orbital.truth.invalid_values}
    assert set(_nonempty(list(listed.values()))) == {"nan_value", "negative_power", "future_sampled_at"}
    for item in orbital.frames:
        gpus = item.frame["gpus"]
        nan = any(math.isnan(g["temp_c"]) for g in gpus)
        negative = any(g["power_w"] < 0 for g in gpus)
        received = datetime.fromtimestamp(item.message.timestamp_ms / 1000, UTC)
        future = item.frame["sampled_at"] > received + timedelta(hours=12)
        kind = listed.get(item.identity)
        assert (nan, negative, future) == (
            kind == "nan_value",
            kind == "negative_power",
            kind == "future_sampled_at",
        )


# --- contact and the link --------------------------------------------------------------------------


def test_continuous_contact_delivers_everything_live_and_in_order(continuous: Run) -> None:
    truth = continuous.truth
    assert truth.frames_sampled == 3 * 600
    assert truth.distinct_frames_sent + truth.frames_lost == truth.frames_sampled
    assert all(not item.frame["stored"] for item in continuous.frames)
    for frames in continuous.by_rack().values():
        firsts = {item.identity: item for item in reversed(frames)}  # first copy of each frame
        seqs = [item.frame["frame_seq"] for item in sorted(firsts.values(), key=lambda i: i.index)]
        assert all(a < b for a, b in pairwise(seqs))
        assert seqs[0] == 0
    lost = {(r.rack_id, r.boot_epoch, s) for r in truth.lost for s in range(r.first_seq, r.last_seq + 1)}
    expected = {(f"sat-0001/rack-{r}", 0, s) for r in (1, 2, 3) for s in range(600)}
    assert truth.delivered_ids() == expected - lost


def test_frame_interval_accelerates_time_with_one_frame_per_interval() -> None:
    """``frame_interval_s``: one frame per rack per interval, consecutive sequence numbers, each rack at a
    fixed phase within the interval; 1 s (the default) yields the same bytes as before the knob."""
    slow = run(satellites=1, racks_per_satellite=3, duration_s=6 * 3600, frame_interval_s=600, **_CLEAN)
    assert slow.truth.frames_sampled == 3 * 36
    assert not slow.undecodable
    for frames in slow.by_rack().values():
        assert [item.frame["frame_seq"] for item in frames] == list(range(36))
        offsets = [item.offset_s for item in frames]
        assert all(b - a == pytest.approx(600, abs=1e-3) for a, b in pairwise(offsets))
        assert 0 <= offsets[0] < 600
        assert offsets[-1] < 6 * 3600
        for item in frames:  # received live, within the link latency
            assert 0 < item.message.timestamp_ms / 1000 - item.frame["sampled_at"].timestamp() < 0.5
    assert len({round(frames[0].offset_s) for frames in slow.by_rack().values()}) == 3
    default = SimulationConfig(duration_s=30, contact="continuous", seed=5)
    explicit = default.model_copy(update={"frame_interval_s": 1.0})
    assert list(generate(default)[0]) == list(generate(explicit)[0])
    with pytest.raises(ValidationError):
        SimulationConfig(frame_interval_s=0.5)


def test_boot_epoch_continues_a_history_with_new_frame_keys() -> None:
    later = run(satellites=1, racks_per_satellite=2, duration_s=30, boot_epoch=3, **_CLEAN)
    assert {item.frame["boot_epoch"] for item in later.frames} == {3}
    assert sorted(item.frame["frame_seq"] for item in later.frames) == sorted([*range(30), *range(30)])


_CLEAN: dict[str, Any] = {"contact": "continuous", "seed": 2, "loss_rate": 0, "duplicate_rate": 0}


def test_orbital_contact_plays_back_stored_frames_out_of_order(orbital: Run) -> None:
    stored = [item for item in orbital.frames if item.frame["stored"]]
    assert len(stored) > len(orbital.frames) / 2
    for frames in orbital.by_rack().values():
        order = [(item.frame["boot_epoch"], item.frame["frame_seq"]) for item in frames]
        assert any(b < a for a, b in pairwise(order)), "playback must interleave with live frames"
    live = [item for item in orbital.frames if not item.frame["stored"]]
    assert _nonempty(live)
    # Playback bursts: some second carries about ten times the live rate of one rack.
    per_second = Counter((item.frame["rack_id"], item.message.timestamp_ms // 1000) for item in stored)
    assert max(per_second.values()) >= 9


def test_eclipse_darkens_the_panels_and_drains_the_battery(orbital: Run) -> None:
    for frames in orbital.by_rack().values():
        live_order = sorted({item.identity: item for item in frames}.values(), key=lambda i: i.offset_s)
        dark = [i.frame["power"] for i in live_order if i.frame["power"]["in_eclipse"]]
        lit = [i.frame["power"] for i in live_order if not i.frame["power"]["in_eclipse"]]
        assert max(p["solar_w"] for p in _nonempty(dark)) < 10
        assert min(p["solar_w"] for p in _nonempty(lit)) > 50_000
        pairs = pairwise([i.frame["power"]["battery_soc"] for i in live_order])
        drains = [b < a for (a, b), item in zip(pairs, live_order[1:], strict=False)]
        in_dark = [item.frame["power"]["in_eclipse"] for item in live_order[1:]]
        assert sum(d and e for d, e in zip(drains, in_dark, strict=True)) > 0.9 * sum(in_dark)


def test_undelivered_frames_stay_on_board_without_flush() -> None:
    config: dict[str, Any] = {"satellites": 1, "racks_per_satellite": 1, "duration_s": 900, "seed": 3}
    flushed = Simulation(
        SimulationConfig(**config, orbit_period_s=600, max_eclipse_s=200, pass_min_s=60, pass_max_s=60)
    )
    kept = Simulation(
        SimulationConfig(
            **config, orbit_period_s=600, max_eclipse_s=200, pass_min_s=60, pass_max_s=60, flush_on_board_at_end=False
        )
    )
    sum(1 for _ in flushed.messages())
    sum(1 for _ in kept.messages())
    assert flushed.truth.frames_undelivered_on_board == 0
    assert kept.truth.frames_undelivered_on_board == sum(r.count for r in kept.truth.undelivered) > 0
    rack = kept.racks[0]
    last_contact = max(p.end_s for p in rack.schedule.passes if p.start_s < 900)
    assert last_contact < 900
    after_contact = sum(1 for t in range(900) if t + rack.phase_s >= last_contact)
    assert kept.truth.frames_undelivered_on_board == after_contact
    assert kept.truth.frames_sampled == flushed.truth.frames_sampled == 900
    for truth in (flushed.truth, kept.truth):
        assert truth.frames_sampled == (
            truth.distinct_frames_sent
            + truth.invalid_frames_sent
            + truth.frames_lost
            + truth.frames_undelivered_on_board
        )
    with pytest.raises(RuntimeError):
        next(iter(kept.messages()))


def test_reboots_restart_frame_seq_and_counters() -> None:
    result = run(
        satellites=1,
        racks_per_satellite=1,
        duration_s=1800,
        seed=4,
        contact="continuous",
        reboot_rate_per_hour=30,
        loss_rate=0,
        duplicate_rate=0,
    )
    reboots = _nonempty(result.truth.reboots)
    assert [r.new_epoch for r in reboots] == list(range(1, len(reboots) + 1))
    epochs: dict[int, list[Frame]] = defaultdict(list)
    for item in result.frames:
        epochs[item.frame["boot_epoch"]].append(item.frame)
    assert sorted(epochs) == list(range(len(reboots) + 1))
    for epoch, frames in epochs.items():
        assert [f["frame_seq"] for f in frames] == list(range(len(frames)))
        for field in ("ecc_sbe", "nvlink_errors"):
            per_gpu = [[g.get(field, 0) for g in f["gpus"]] for f in frames]
            assert all(a <= b for before, after in pairwise(per_gpu) for a, b in zip(before, after, strict=False))
            if epoch:
                assert max(per_gpu[0]) <= 1
        seu = [f["radiation"]["seu_count"] for f in frames]
        assert seu == sorted(seu)
        if epoch:
            assert seu[0] <= 1
            assert frames[0]["sampled_at"] >= reboots[epoch - 1].at
    grown = max(max(g["ecc_sbe"] for g in frames[-1]["gpus"]) for frames in epochs.values())
    assert grown > 1, "some GPU's single-bit errors must accumulate"


def test_v1_frames_lack_v2_fields_and_racks_upgrade(orbital: Run) -> None:
    for item in orbital.frames:
        has_v2 = "firmware" in item.frame and all(f in item.frame["gpus"][0] for f in V2_ONLY_FIELDS)
        assert has_v2 == (item.schema_id == 2)
        assert item.message.value[1:5] == item.schema_id.to_bytes(4, "big")
    upgrades = {u.rack_id: u.at for u in orbital.truth.upgrades}
    v1_racks = {item.frame["rack_id"] for item in orbital.frames if item.schema_id == 1}
    assert _nonempty(sorted(v1_racks))
    assert set(upgrades) == v1_racks
    for item in orbital.frames:
        at = upgrades.get(item.frame["rack_id"])
        if at is not None and item.frame["sampled_at"] < at + timedelta(days=0.5):
            assert item.schema_id == (2 if item.frame["sampled_at"] >= at else 1)


# --- faults ----------------------------------------------------------------------------------------

FAULT_START, FAULT_LENGTH = 100.0, 200.0


@pytest.fixture(scope="module")
def faulty() -> Run:
    faults = [
        FaultSpec(kind=kind, satellite=0, rack=rack, node=node, gpu=gpu, start_s=FAULT_START, duration_s=FAULT_LENGTH)
        for rack, (kind, node, gpu) in enumerate(
            [("gpu_overheat", 2, 5), ("ecc_dbe", 7, 1), ("seu_storm", 0, 0), ("radiator_failure", 0, 0)]
        )
    ]
    return run(
        satellites=1,
        racks_per_satellite=5,
        duration_s=400,
        seed=9,
        contact="continuous",
        v2_fraction=1.0,
        duplicate_rate=0,
        loss_rate=0,
        faults=faults,
    )


def _in_window(item: Decoded, after_s: float = 0.0) -> bool:
    return FAULT_START + after_s <= item.offset_s < FAULT_START + FAULT_LENGTH


def test_fault_truth_has_absolute_windows(faulty: Run) -> None:
    records = faulty.truth.faults
    assert [(f.kind, f.rack_id, f.node, f.gpu) for f in records] == [
        ("gpu_overheat", "sat-0001/rack-1", 2, 5),
        ("ecc_dbe", "sat-0001/rack-2", 7, 1),
        ("seu_storm", "sat-0001/rack-3", 0, 0),
        ("radiator_failure", "sat-0001/rack-4", 0, 0),
    ]
    assert all(f.start == START + timedelta(seconds=100) and f.end == START + timedelta(seconds=300) for f in records)


def test_gpu_overheat_only_on_its_gpu_and_window(faulty: Run) -> None:
    racks = faulty.by_rack()
    hot = [item for item in racks["sat-0001/rack-1"] if _in_window(item, after_s=40)]
    for item in _nonempty(hot):
        gpu = item.frame["gpus"][2 * 8 + 5]
        assert gpu["temp_c"] > 90
        assert gpu["hbm_temp_c"] > 95
        assert gpu["throttle_reasons"] & 0x60 == 0x60
        assert gpu["sm_clock_mhz"] < 1400
    for rack, frames in racks.items():
        for item in frames:
            for index, gpu in enumerate(item.frame["gpus"]):
                faulted = rack == "sat-0001/rack-1" and index == 21 and _in_window(item)
                if (rack == "sat-0001/rack-4" and _in_window(item)) or faulted:
                    continue
                assert 30 < gpu["temp_c"] <= 83, (rack, index, item.offset_s)
                assert gpu["throttle_reasons"] == 0
                assert 1400 <= gpu["sm_clock_mhz"] <= 1980


def test_ecc_dbe_only_on_its_gpu(faulty: Run) -> None:
    for rack, frames in faulty.by_rack().items():
        for item in frames:
            for index, gpu in enumerate(item.frame["gpus"]):
                target = rack == "sat-0001/rack-2" and index == 7 * 8 + 1
                if not target or item.offset_s < FAULT_START:
                    assert gpu["ecc_dbe"] == 0
                    assert not gpu["row_remap_pending"]
                    assert gpu["xid"] != 48
                elif _in_window(item):
                    assert gpu["ecc_dbe"] >= 1
                    assert gpu["row_remap_pending"]
                else:
                    assert gpu["xid"] is None
    xids = [i.offset_s for i in faulty.by_rack()["sat-0001/rack-2"] if i.frame["gpus"][57]["xid"] == 48]
    assert _nonempty(xids)[0] < FAULT_START + 1.0
    final = faulty.by_rack()["sat-0001/rack-2"][-1].frame["gpus"][57]["ecc_dbe"]
    assert final == 2  # at the window's start and two minutes into it


def test_seu_storm_only_on_its_rack(faulty: Run) -> None:
    for rack, frames in faulty.by_rack().items():
        window = [i.frame["radiation"] for i in frames if _in_window(i)]
        outside = [i.frame["radiation"] for i in frames if not _in_window(i)]
        gained = window[-1]["seu_count"] - window[0]["seu_count"]
        if rack == "sat-0001/rack-3":
            assert gained >= 3
            assert min(r["dose_rate_mrad_h"] for r in window) >= 20
        else:
            assert gained <= 2
            assert max(r["dose_rate_mrad_h"] for r in window) < 3
        assert max(r["dose_rate_mrad_h"] for r in outside) < 3


def test_radiator_failure_heats_its_rack(faulty: Run) -> None:
    racks = faulty.by_rack()
    broken = [i.frame for i in racks["sat-0001/rack-4"] if _in_window(i)]
    healthy = [i.frame for i in racks["sat-0001/rack-5"] if _in_window(i)]
    for field, rise in (("radiator_c", 8), ("coolant_inlet_c", 4), ("coolant_outlet_c", 4)):
        gap_before = broken[0]["thermal"][field] - healthy[0]["thermal"][field]
        assert broken[-1]["thermal"][field] - healthy[-1]["thermal"][field] > gap_before + rise
    for hot, cool in zip(broken, healthy, strict=False):
        mean_hot = sum(g["temp_c"] for g in hot["gpus"]) / 64
        mean_cool = sum(g["temp_c"] for g in cool["gpus"]) / 64
        assert 8 < mean_hot - mean_cool < 35
    after = [i.frame for i in racks["sat-0001/rack-4"] if i.offset_s >= FAULT_START + FAULT_LENGTH]
    assert max(g["temp_c"] for f in _nonempty(after) for g in f["gpus"]) <= 83


# --- configuration and producing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"duplicate_rate": 1.5},
        {"loss_rate": -0.1},
        {"satellites": 0},
        {"racks_per_satellite": 0},
        {"unknown_setting": 1},
        {"faults": [{"kind": "ecc_dbe", "satellite": 2, "rack": 0, "start_s": 0, "duration_s": 1}]},
        {"faults": [{"kind": "ecc_dbe", "satellite": 0, "rack": 0, "gpu": 8, "start_s": 0, "duration_s": 1}]},
        {"faults": [{"kind": "meteor", "satellite": 0, "rack": 0, "start_s": 0, "duration_s": 1}]},
    ],
)
def test_config_rejects_impossible_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SimulationConfig(**settings)


def test_config_defaults_and_naive_start_is_utc() -> None:
    config = SimulationConfig(start=datetime(2026, 1, 2, 3, 4))
    assert config.start == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert SimulationConfig().start == START
    assert SimulationConfig().rack_count == 4


class FakeFuture:
    def add_errback(self, callback: Any) -> None:
        self.callback = callback


class FakeProducer:
    def __init__(self, bootstrap_servers: str, config: Mapping[str, Any]) -> None:
        self.bootstrap_servers, self.config = bootstrap_servers, dict(config)
        self.sent: list[tuple[str, bytes, bytes, int, float]] = []
        self.flushed = self.closed = False

    def send(self, topic: str, *, key: bytes, value: bytes, timestamp_ms: int) -> FakeFuture:
        self.sent.append((topic, key, value, timestamp_ms, time.monotonic()))
        return FakeFuture()

    def flush(self) -> None:
        self.flushed = True

    def close(self) -> None:
        self.closed = True


def test_produce_sends_keyed_messages_with_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    producers: list[FakeProducer] = []

    def factory(bootstrap_servers: str, config: Mapping[str, Any]) -> FakeProducer:
        producers.append(FakeProducer(bootstrap_servers, config))
        return producers[-1]

    monkeypatch.setattr(produce_module, "_make_producer", factory)
    messages = [SimMessage(b"sat-0001/rack-1", b"\x00v", 1_000 + 100 * i) for i in range(5)]
    progress: list[int] = []
    started = time.monotonic()
    count = produce(
        messages, "localhost:9092", "t", producer_config={"acks": "all"}, progress=progress.append, speed=10
    )
    (producer,) = producers
    assert count == 5
    assert progress[-1] == 5
    assert producer.flushed
    assert producer.closed
    assert producer.config["acks"] == "all"
    assert producer.config["linger_ms"] == 20
    assert [(s[0], s[1], s[2], s[3]) for s in producer.sent] == [
        (("t", m.key, m.value, m.timestamp_ms)) for m in messages
    ]
    assert producer.sent[-1][4] - started >= 0.4 / 10 - 0.005


def test_contract_dir_from_argument_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for item in default_contract_dir().iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    monkeypatch.setenv("ORBITWATCH_CONTRACT_DIR", str(tmp_path))
    assert default_contract_dir() == tmp_path
    assert set(ContractCodec().schemas) == {1, 2}
    (tmp_path / "registry.json").write_text(json.dumps({"1": "rack_frame_v1.avsc"}))
    with pytest.raises(ValueError, match="lacks schema ids"):
        Simulation(SimulationConfig(duration_s=1), contract_dir=tmp_path)
