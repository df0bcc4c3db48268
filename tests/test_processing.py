"""prepare_batch: rejection of impossible frames, in-batch dedup, invalid readings, per-GPU rows."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ingest.codec import FrameDecoder
from processing import quality
from processing.errors import FrameShapeError
from processing.rows import PreparedBatch, prepare_batch
from tests.helpers.frames import (
    DEFAULT_RECEIVED_MS,
    DEFAULT_SAMPLED_AT,
    GPUS_PER_FRAME,
    Frame,
    Version,
    encode_message,
    gpu_sample,
    rack_frame,
    raw_batch,
    registry,
)

RECEIVED_AT = datetime.fromtimestamp(DEFAULT_RECEIVED_MS / 1000, tz=UTC)


@pytest.fixture(scope="module")
def decoder() -> FrameDecoder:
    return FrameDecoder(registry())


def decode(
    decoder: FrameDecoder,
    frames: list[Frame],
    *,
    partitions: list[int] | None = None,
    offsets: list[int] | None = None,
    received: list[datetime] | None = None,
    version: Version = 2,
) -> pl.DataFrame:
    """Decoded frames (as the codec produces them) for ``frames`` at the given Kafka coordinates."""
    batch = raw_batch(
        [encode_message(f, version) for f in frames],
        partition=partitions if partitions is not None else 0,
        offsets=offsets,
        timestamps_ms=[int(r.timestamp() * 1000) for r in received] if received is not None else None,
    )
    decoded = decoder.decode(batch)
    assert decoded.dead_letters == []
    return decoded.frames


def rack_row(prepared: PreparedBatch, frame_seq: int) -> dict[str, Any]:
    rows = prepared.rack_rows.filter(pl.col("frame_seq") == frame_seq).to_dicts()
    assert len(rows) == 1
    return rows[0]


def gpu_row(prepared: PreparedBatch, frame_seq: int, node: int, gpu: int) -> dict[str, Any]:
    rows = prepared.gpu_rows.filter(
        (pl.col("frame_seq") == frame_seq) & (pl.col("node") == node) & (pl.col("gpu") == gpu)
    ).to_dicts()
    assert len(rows) == 1
    return rows[0]


# ---------------------------------------------------------------------------------------------- dedup


def test_in_batch_duplicates_keep_first_by_partition_then_offset(decoder: FrameDecoder) -> None:
    # The same frame (seq 1) arrives four times, told apart by ground_station; arrival order is scrambled.
    copies = [
        (rack_frame(frame_seq=1, ground_station="p1-o5"), 1, 5),
        (rack_frame(frame_seq=1, ground_station="p0-o9"), 0, 9),
        (rack_frame(frame_seq=2), 1, 6),
        (rack_frame(frame_seq=1, ground_station="p0-o3"), 0, 3),
        (rack_frame(frame_seq=1, ground_station="p2-o0"), 2, 0),
        (rack_frame(frame_seq=3), 2, 1),
        (rack_frame(frame_seq=3, ground_station="dup-of-3"), 2, 2),
    ]
    frames = decode(
        decoder,
        [f for f, _, _ in copies],
        partitions=[p for _, p, _ in copies],
        offsets=[o for _, _, o in copies],
    )
    prepared = prepare_batch(frames)
    assert prepared.rack_rows.height == 3
    assert sorted(prepared.rack_rows["frame_seq"].to_list()) == [1, 2, 3]
    first = rack_row(prepared, 1)
    assert (first["kafka_partition"], first["kafka_offset"], first["ground_station"]) == (0, 3, "p0-o3")
    third = rack_row(prepared, 3)
    assert (third["kafka_partition"], third["kafka_offset"], third["ground_station"]) == (2, 1, "gs-svalbard")
    # Dropped copies counted where they arrived: (0, 9), (1, 5), (2, 0) for seq 1 and (2, 2) for seq 3.
    assert prepared.duplicates_by_partition == {0: 1, 1: 1, 2: 2}
    assert prepared.gpu_rows.height == 3 * GPUS_PER_FRAME
    assert prepared.rejected.height == 0


def test_frames_differing_in_any_key_part_are_not_duplicates(decoder: FrameDecoder) -> None:
    frames = [
        rack_frame(rack_id="sat-0001/rack-1", boot_epoch=0, frame_seq=0),
        rack_frame(rack_id="sat-0001/rack-2", boot_epoch=0, frame_seq=0),
        rack_frame(rack_id="sat-0001/rack-1", boot_epoch=1, frame_seq=0),
        rack_frame(rack_id="sat-0001/rack-1", boot_epoch=0, frame_seq=1),
    ]
    prepared = prepare_batch(decode(decoder, frames))
    assert prepared.rack_rows.height == 4
    assert prepared.duplicates_by_partition == {}
    assert prepared.gpu_rows.height == 4 * GPUS_PER_FRAME


def test_no_duplicates_gives_empty_counts(decoder: FrameDecoder) -> None:
    prepared = prepare_batch(decode(decoder, [rack_frame(frame_seq=s) for s in range(5)]))
    assert prepared.duplicates_by_partition == {}
    assert prepared.rack_rows["kafka_offset"].to_list() == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------- rejection

SKEW = quality.MAX_CLOCK_SKEW
REJECTIONS: list[Any] = [
    pytest.param({"frame_seq": -1}, "impossible frame: negative frame_seq", id="negative-frame_seq"),
    pytest.param({"boot_epoch": -1}, "impossible frame: negative boot_epoch", id="negative-boot_epoch"),
    pytest.param(
        {"frame_seq": -5, "boot_epoch": -5}, "impossible frame: negative frame_seq", id="frame_seq-checked-first"
    ),
    pytest.param(
        {"sampled_at": RECEIVED_AT + SKEW + timedelta(microseconds=1)},
        "impossible frame: sampled_at later than received + 0:05:00",
        id="sampled-after-received-plus-5min",
    ),
    pytest.param(
        {"sampled_at": RECEIVED_AT + timedelta(days=365)},
        "impossible frame: sampled_at later than received + 0:05:00",
        id="sampled-a-year-in-the-future",
    ),
    pytest.param(
        {"sampled_at": datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)},
        "impossible frame: sampled_at before 2000-01-01",
        id="sampled-just-before-2000",
    ),
    pytest.param(
        {"sampled_at": datetime(1970, 1, 1, tzinfo=UTC)},
        "impossible frame: sampled_at before 2000-01-01",
        id="sampled-at-epoch",
    ),
]


@pytest.mark.parametrize(("override", "reason"), REJECTIONS)
def test_impossible_frames_are_rejected_with_reason(
    decoder: FrameDecoder, override: dict[str, Any], reason: str
) -> None:
    bad = rack_frame(**{"frame_seq": 10, **override})
    good = [rack_frame(frame_seq=s) for s in (1, 2)]
    frames = decode(decoder, [good[0], bad, good[1]], partitions=[4, 4, 4], offsets=[100, 101, 102])
    prepared = prepare_batch(frames)
    assert prepared.rejected.to_dicts() == [{"kafka_partition": 4, "kafka_offset": 101, "reason": reason}]
    assert prepared.rack_rows["kafka_offset"].to_list() == [100, 102]
    assert set(prepared.gpu_rows["frame_seq"].to_list()) == {1, 2}
    assert prepared.duplicates_by_partition == {}


@pytest.mark.parametrize(
    "sampled_at",
    [
        pytest.param(RECEIVED_AT + SKEW, id="exactly-received-plus-5min"),
        pytest.param(datetime(2000, 1, 1, tzinfo=UTC), id="exactly-2000-01-01"),
        pytest.param(RECEIVED_AT - timedelta(days=30), id="played-back-a-month-late"),
    ],
)
def test_boundary_times_are_accepted(decoder: FrameDecoder, sampled_at: datetime) -> None:
    prepared = prepare_batch(decode(decoder, [rack_frame(frame_seq=0, boot_epoch=0, sampled_at=sampled_at)]))
    assert prepared.rejected.height == 0
    assert rack_row(prepared, 0)["sampled_at"] == sampled_at


def test_rejected_copy_does_not_count_as_duplicate(decoder: FrameDecoder) -> None:
    frames = [
        rack_frame(frame_seq=7, sampled_at=datetime(1990, 1, 1, tzinfo=UTC)),
        rack_frame(frame_seq=7),
    ]
    prepared = prepare_batch(decode(decoder, frames))
    assert prepared.rejected["kafka_offset"].to_list() == [0]
    assert prepared.rack_rows["kafka_offset"].to_list() == [1]
    assert prepared.duplicates_by_partition == {}


def test_missing_columns_raise_frame_shape_error(decoder: FrameDecoder) -> None:
    frames = decode(decoder, [rack_frame()])
    with pytest.raises(FrameShapeError, match=r"\['kafka_offset', 'received_at'\]"):
        prepare_batch(frames.drop("received_at", "kafka_offset"))


# ---------------------------------------------------------------------------------------------- readings

# Hand-computed bits (order of quality.GPU_READING_LIMITS / RACK_READING_LIMITS):
# gpu: util_pct 1, mem_used_mib 2, mem_total_mib 4, power_w 8, temp_c 16, hbm_temp_c 32, sm_clock_mhz 64,
#      ecc_sbe 128, ecc_dbe 256, nvlink_errors 512
# rack: bus_w 1, solar_w 2, battery_soc 4, radiator_c 8, coolant_inlet_c 16, coolant_outlet_c 32,
#       seu_count 64, dose_rate_mrad_h 128
GPU_CASES: list[Any] = [
    pytest.param({"util_pct": math.nan}, 1, id="util-nan"),
    pytest.param({"util_pct": math.inf}, 1, id="util-inf"),
    pytest.param({"util_pct": 100.5}, 1, id="util-over-100"),
    pytest.param({"mem_used_mib": -1}, 2, id="mem-used-negative"),
    pytest.param({"mem_total_mib": -81_920}, 4, id="mem-total-negative"),
    pytest.param({"power_w": -0.5}, 8, id="power-negative"),
    pytest.param({"power_w": 5_001.0}, 8, id="power-too-high"),
    pytest.param({"temp_c": 250.0}, 16, id="temp-too-hot"),
    pytest.param({"hbm_temp_c": -200.0}, 32, id="hbm-too-cold"),
    pytest.param({"sm_clock_mhz": 20_000}, 64, id="clock-too-high"),
    pytest.param({"ecc_sbe": -3}, 128, id="sbe-negative"),
    pytest.param({"ecc_dbe": -1}, 256, id="dbe-negative"),
    pytest.param({"nvlink_errors": -(2**40)}, 512, id="nvlink-negative"),
    pytest.param({"util_pct": math.nan, "power_w": -1.0, "temp_c": 250.0}, 1 + 8 + 16, id="three-bad"),
    pytest.param(
        {"ecc_dbe": -1, "nvlink_errors": -5, "sm_clock_mhz": 20_000, "mem_used_mib": -7},
        256 + 512 + 64 + 2,
        id="four-bad",
    ),
]


@pytest.mark.parametrize(("override", "mask"), GPU_CASES)
def test_impossible_gpu_readings_become_null_with_mask_bit(
    decoder: FrameDecoder, override: dict[str, Any], mask: int
) -> None:
    gpus = [gpu_sample(n, g) for n in range(8) for g in range(8)]
    gpus[13] = gpu_sample(1, 5, **override)
    frame = rack_frame(frame_seq=3, gpus=gpus)
    prepared = prepare_batch(decode(decoder, [frame]))
    assert prepared.gpu_rows.height == GPUS_PER_FRAME
    bad = gpu_row(prepared, 3, 1, 5)
    assert bad["invalid_mask"] == mask
    expected = gpu_sample(1, 5)
    for column in quality.GPU_READING_LIMITS:
        if column in override:
            assert bad[column] is None, column
        else:
            assert bad[column] == expected[column], column
    assert bad["xid"] == expected["xid"]
    assert bad["tenant"] == expected["tenant"]
    others = prepared.gpu_rows.filter(~((pl.col("node") == 1) & (pl.col("gpu") == 5)))
    assert others["invalid_mask"].to_list() == [0] * (GPUS_PER_FRAME - 1)
    # The rack row of the frame is untouched by a bad GPU reading.
    assert rack_row(prepared, 3)["invalid_mask"] == 0


def test_boundary_gpu_readings_are_valid(decoder: FrameDecoder) -> None:
    gpus = [
        gpu_sample(0, 0, util_pct=0.0, power_w=0.0, temp_c=-150.0, hbm_temp_c=200.0, sm_clock_mhz=0),
        gpu_sample(0, 1, util_pct=100.0, power_w=5_000.0, temp_c=200.0, hbm_temp_c=-150.0, sm_clock_mhz=10_000),
        gpu_sample(0, 2, mem_used_mib=0, mem_total_mib=2**31 - 1, ecc_sbe=2**63 - 1, ecc_dbe=0, nvlink_errors=0),
        gpu_sample(0, 3, xid=None, tenant=None),
    ]
    prepared = prepare_batch(decode(decoder, [rack_frame(frame_seq=0, gpus=gpus)]))
    assert prepared.gpu_rows["invalid_mask"].to_list() == [0, 0, 0, 0]
    row = gpu_row(prepared, 0, 0, 2)
    assert row["ecc_sbe"] == 2**63 - 1
    assert row["mem_total_mib"] == 2**31 - 1
    assert gpu_row(prepared, 0, 0, 1)["util_pct"] == 100.0


RACK_CASES: list[Any] = [
    pytest.param({"power": {"bus_w": math.inf}}, 1, id="bus-inf"),
    pytest.param({"power": {"solar_w": -1.0}}, 2, id="solar-negative"),
    pytest.param({"power": {"battery_soc": 1.5}}, 4, id="soc-over-1"),
    pytest.param({"thermal": {"radiator_c": -300.0}}, 8, id="radiator-below-absolute-zero"),
    pytest.param({"thermal": {"coolant_inlet_c": math.nan}}, 16, id="inlet-nan"),
    pytest.param({"thermal": {"coolant_outlet_c": 600.0}}, 32, id="outlet-too-hot"),
    pytest.param({"radiation": {"seu_count": -1}}, 64, id="seu-negative"),
    pytest.param({"radiation": {"dose_rate_mrad_h": math.nan}}, 128, id="dose-nan"),
    pytest.param(
        {"power": {"battery_soc": 1.5}, "thermal": {"radiator_c": -300.0}, "radiation": {"dose_rate_mrad_h": math.nan}},
        4 + 8 + 128,
        id="three-bad",
    ),
]


@pytest.mark.parametrize(("override", "mask"), RACK_CASES)
def test_impossible_rack_readings_become_null_with_mask_bit(
    decoder: FrameDecoder, override: dict[str, dict[str, Any]], mask: int
) -> None:
    base = rack_frame(frame_seq=5)
    frame = {**base, **{name: {**base[name], **values} for name, values in override.items()}}
    prepared = prepare_batch(decode(decoder, [frame, rack_frame(frame_seq=6)]))
    row = rack_row(prepared, 5)
    assert row["invalid_mask"] == mask
    bad_columns = {column for values in override.values() for column in values}
    flat = {**base["power"], **base["thermal"], **base["radiation"]}
    for column in quality.RACK_READING_LIMITS:
        if column in bad_columns:
            assert row[column] is None, column
        else:
            assert row[column] == flat[column], column
    assert row["in_eclipse"] is False
    assert rack_row(prepared, 6)["invalid_mask"] == 0
    assert prepared.gpu_rows["invalid_mask"].to_list() == [0] * (2 * GPUS_PER_FRAME)


# ---------------------------------------------------------------------------------------------- shapes


def test_gpu_rows_have_64_rows_per_frame_with_frame_identity(decoder: FrameDecoder) -> None:
    frames = [
        rack_frame(
            rack_id="sat-0009/rack-3", boot_epoch=2, frame_seq=s, sampled_at=DEFAULT_SAMPLED_AT + timedelta(seconds=s)
        )
        for s in range(4)
    ]
    prepared = prepare_batch(decode(decoder, frames))
    gpu_rows = prepared.gpu_rows
    assert gpu_rows.height == 4 * GPUS_PER_FRAME
    counts = dict(gpu_rows.group_by("frame_seq").len().iter_rows())
    assert counts == {0: 64, 1: 64, 2: 64, 3: 64}
    assert set(gpu_rows["rack_id"].to_list()) == {"sat-0009/rack-3"}
    assert set(gpu_rows["boot_epoch"].to_list()) == {2}
    for s in range(4):
        rows = gpu_rows.filter(pl.col("frame_seq") == s)
        assert set(rows["sampled_at"].to_list()) == {DEFAULT_SAMPLED_AT + timedelta(seconds=s)}
        assert sorted(zip(rows["node"].to_list(), rows["gpu"].to_list(), strict=True)) == [
            (n, g) for n in range(8) for g in range(8)
        ]
    for column in ("rack_id", "boot_epoch", "frame_seq", "sampled_at", "node", "gpu", "invalid_mask", "tenant"):
        assert column in gpu_rows.columns
    assert gpu_rows.schema["invalid_mask"] == pl.Int32()
    # Rack rows: structs unnested, gpus dropped, one per frame.
    assert "gpus" not in prepared.rack_rows.columns
    for column in ("bus_w", "radiator_c", "seu_count", "in_eclipse", "invalid_mask", "received_at"):
        assert column in prepared.rack_rows.columns
    assert prepared.rack_rows.height == 4


def test_frame_without_gpus_has_a_rack_row_and_no_gpu_rows(decoder: FrameDecoder) -> None:
    prepared = prepare_batch(decode(decoder, [rack_frame(frame_seq=0, gpus=[]), rack_frame(frame_seq=1)]))
    assert prepared.rack_rows["frame_seq"].to_list() == [0, 1]
    assert set(prepared.gpu_rows["frame_seq"].to_list()) == {1}
    assert prepared.gpu_rows.height == GPUS_PER_FRAME


def test_v1_frames_get_default_v2_gpu_columns(decoder: FrameDecoder) -> None:
    prepared = prepare_batch(decode(decoder, [rack_frame(1, frame_seq=0)], version=1))
    assert set(prepared.gpu_rows["nvlink_errors"].to_list()) == {0}
    assert set(prepared.gpu_rows["row_remap_pending"].to_list()) == {False}
    assert prepared.rack_rows["firmware"].to_list() == ["unknown"]
    assert prepared.gpu_rows["invalid_mask"].to_list() == [0] * GPUS_PER_FRAME
