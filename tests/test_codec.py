"""FrameDecoder: malformed messages become dead letters, valid ones decode exactly, v1 resolves to v2."""

from __future__ import annotations

import io
import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import avro_polars
from ingest.codec import DecodedBatch, FrameDecoder, RawBatch
from tests.helpers.frames import (
    DEFAULT_RECEIVED_MS,
    Frame,
    Version,
    decode_body,
    encode_body,
    encode_message,
    frames_batch,
    gpu_sample,
    rack_frame,
    raw_batch,
    raw_schema,
    registry,
    wire_header,
)

METADATA = ("schema_id", "kafka_partition", "kafka_offset", "received_at")
BATCH_SIZE = 50
BAD_INDEX = 25
PARTITION = 3
FIRST_OFFSET = 1_000
GS_SENTINEL = "gs-sentinel-station"
TENANT_SENTINEL = "tenant-sentinel-0001"
SAT_SENTINEL = "sat-sentinel"


@pytest.fixture(scope="module")
def decoder() -> FrameDecoder:
    return FrameDecoder(registry())


# ---------------------------------------------------------------------------------------------- helpers


def zigzag(n: int) -> bytes:
    """Avro long encoding, written independently of the code under test."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def f32(x: float) -> float:
    value: float = struct.unpack("<f", struct.pack("<f", x))[0]
    return value


def normalize(value: Any) -> Any:
    """Comparable form: floats rounded to float32 (NaN made equal to itself), containers recursed."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f32(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def as_v2(frame: Frame, version: Version) -> Frame:
    """The v2 view of a frame written with ``version``: v1 frames get the v2 defaults."""
    if version == 2:
        return frame
    return {
        **frame,
        "firmware": "unknown",
        "gpus": [{**g, "nvlink_errors": 0, "row_remap_pending": False} for g in frame["gpus"]],
    }


def rows_by_offset(decoded: DecodedBatch) -> dict[int, dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for row in decoded.frames.iter_rows(named=True):
        assert row["kafka_offset"] not in rows, "a message was decoded twice"
        rows[row["kafka_offset"]] = row
    return rows


def frame_values(row: dict[str, Any]) -> Frame:
    return {k: v for k, v in row.items() if k not in METADATA}


def sentinel_frame(version: Version = 2, frame_seq: int = BAD_INDEX) -> Frame:
    """A valid frame whose bytes contain unique markers used to locate fields for corruption."""
    gpus = [gpu_sample(n, g, version) for n in range(8) for g in range(8)]
    gpus[0]["tenant"] = TENANT_SENTINEL
    return rack_frame(
        version,
        frame_seq=frame_seq,
        sampled_at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC) + timedelta(seconds=frame_seq),
        satellite_id=SAT_SENTINEL,
        ground_station=GS_SENTINEL,
        gpus=gpus,
    )


def _union_at(body: bytes, text: str) -> int:
    """Offset of the union branch index that precedes the non-null string ``text``."""
    marker = zigzag(1) + zigzag(len(text.encode())) + text.encode()
    assert body.count(marker) == 1
    return body.index(marker)


def _gpus_count_at(body: bytes) -> int:
    """Offset of the gpus array's block count (64 items, then node 0 and gpu 0)."""
    marker = zigzag(64) + zigzag(0) + zigzag(0)
    at = body.index(marker)
    # The count sits right after the radiation record; sanity-check against a frame without GPUs.
    empty = encode_body({**sentinel_frame(), "gpus": []}, 2)
    assert empty[:at] == body[:at]
    return at


def _replace(body: bytes, at: int, old_len: int, new: bytes) -> bytes:
    return body[:at] + new + body[at + old_len :]


def _body() -> bytes:
    return encode_body(sentinel_frame(), 2)


def _union_index(text: str, index: int) -> Callable[[], bytes]:
    def build() -> bytes:
        body = _body()
        return wire_header(2) + _replace(body, _union_at(body, text), 1, zigzag(index))

    return build


def _string_length(length: int) -> Callable[[], bytes]:
    def build() -> bytes:
        body = _body()
        assert body.startswith(zigzag(len(SAT_SENTINEL)) + SAT_SENTINEL.encode())
        return wire_header(2) + zigzag(length) + body[1:]

    return build


def _array_count(count: int) -> Callable[[], bytes]:
    def build() -> bytes:
        body = _body()
        return wire_header(2) + _replace(body, _gpus_count_at(body), len(zigzag(64)), zigzag(count))

    return build


def _truncated(keep: Callable[[int], int], version: Version = 2) -> Callable[[], bytes]:
    def build() -> bytes:
        body = encode_body(sentinel_frame(version), version)
        return wire_header(version) + body[: keep(len(body))]

    return build


def _int_out_of_range() -> bytes:
    body = _body()
    prefix = zigzag(len(SAT_SENTINEL)) + SAT_SENTINEL.encode() + zigzag(len("sat-0001/rack-1")) + b"sat-0001/rack-1"
    assert body.startswith(prefix + zigzag(0))  # boot_epoch 0 follows the two strings
    return wire_header(2) + prefix + zigzag(2**40) + body[len(prefix) + 1 :]


def _invalid_utf8() -> bytes:
    body = _body()
    at = body.index(SAT_SENTINEL.encode())
    return wire_header(2) + _replace(body, at, 4, b"\xff\xfe\xfd\xfc")


def _garbage() -> bytes:
    return wire_header(2) + random.Random(1).randbytes(300)


@dataclass(frozen=True)
class Malformed:
    build: Callable[[], bytes | None]
    reason: str
    # Set when the decoder is known to get this case wrong (a strict xfail, reported as a bug).
    bug: str | None = None


UNION_BUG = (
    "KNOWN LIMITATION of the columnar fast path (README, 'What the codec proves'): "
    "a [null, T] union branch index out of range (2, 5...) is read by "
    "polars.read_avro as the non-null branch and passes the size proof (1 byte either way), so the "
    "message is decoded although fastavro (the authoritative decoder) rejects it with IndexError"
)

MALFORMED = [
    pytest.param(Malformed(lambda: None, "empty message (tombstone)"), id="none"),
    pytest.param(Malformed(lambda: b"", "message of 0 bytes is shorter than the 5-byte wire header"), id="empty"),
    pytest.param(Malformed(lambda: b"\x00\x00\x00\x02", "message of 4 bytes is shorter"), id="4-bytes"),
    pytest.param(Malformed(lambda: b"\x00", "message of 1 bytes is shorter"), id="1-byte"),
    pytest.param(
        Malformed(lambda: b"\x01" + encode_message(sentinel_frame(), 2)[1:], "bad magic byte 0x01"),
        id="bad-magic-01",
    ),
    pytest.param(
        Malformed(lambda: b"\xff" + encode_message(sentinel_frame(), 2)[1:], "bad magic byte 0xff"),
        id="bad-magic-ff",
    ),
    pytest.param(Malformed(lambda: wire_header(99) + _body(), "unknown schema id 99"), id="unknown-id-99"),
    pytest.param(Malformed(lambda: wire_header(0) + _body(), "unknown schema id 0"), id="unknown-id-0"),
    pytest.param(
        Malformed(lambda: wire_header(2**32 - 1) + _body(), "unknown schema id 4294967295"),
        id="unknown-id-max",
    ),
    pytest.param(Malformed(lambda: wire_header(2), "undecodable Avro for schema id 2: EOFError"), id="header-only"),
    pytest.param(Malformed(_truncated(lambda n: 1), "undecodable Avro for schema id 2: EOFError"), id="truncated-at-1"),
    pytest.param(
        Malformed(_truncated(lambda n: 40), "undecodable Avro for schema id 2"), id="truncated-in-header-fields"
    ),
    pytest.param(Malformed(_truncated(lambda n: n // 2), "undecodable Avro for schema id 2"), id="truncated-at-half"),
    pytest.param(
        Malformed(_truncated(lambda n: n - 1), "undecodable Avro for schema id 2: EOFError"),
        id="truncated-last-byte",
    ),
    pytest.param(
        Malformed(_truncated(lambda n: n - 1, version=1), "undecodable Avro for schema id 1: EOFError"),
        id="truncated-v1",
    ),
    pytest.param(
        Malformed(
            lambda: encode_message(sentinel_frame(), 2) + b"\x00\x01",
            "2 trailing bytes after the Avro record (schema id 2)",
        ),
        id="trailing-2-bytes",
    ),
    pytest.param(
        Malformed(
            lambda: encode_message(sentinel_frame(1), 1) + b"\x00",
            "1 trailing bytes after the Avro record (schema id 1)",
        ),
        id="trailing-1-byte-v1",
    ),
    pytest.param(Malformed(_garbage, "undecodable Avro for schema id 2"), id="garbage-body"),
    pytest.param(
        Malformed(_union_index(GS_SENTINEL, 5), "undecodable Avro for schema id 2: IndexError", bug=UNION_BUG),
        id="union-index-5-ground_station",
    ),
    pytest.param(
        Malformed(
            _union_index(TENANT_SENTINEL, 2),
            "undecodable Avro for schema id 2: IndexError",
            bug=UNION_BUG,
        ),
        id="union-index-2-gpu-tenant",
    ),
    pytest.param(
        Malformed(_string_length(-5), "undecodable Avro for schema id 2: EOFError"), id="negative-string-length"
    ),
    pytest.param(
        Malformed(_string_length(10**9), "undecodable Avro for schema id 2: EOFError"), id="huge-string-length"
    ),
    pytest.param(Malformed(_array_count(-1000), "undecodable Avro for schema id 2"), id="negative-array-count"),
    pytest.param(Malformed(_array_count(10**7), "undecodable Avro for schema id 2"), id="huge-array-count"),
    pytest.param(Malformed(_invalid_utf8, "undecodable Avro for schema id 2: UnicodeDecodeError"), id="invalid-utf8"),
    pytest.param(Malformed(_int_out_of_range, "schema id 2"), id="int-field-outside-int32"),
]


def _assert_only_bad_dead(
    decoded: DecodedBatch, batch: RawBatch, frames: dict[int, Frame], bad: dict[int, str]
) -> None:
    """Every valid message decoded to its own values; exactly the ``bad`` ones dead-lettered."""
    rows = rows_by_offset(decoded)
    assert set(rows) == set(frames)
    for offset, frame in frames.items():
        assert normalize(frame_values(rows[offset])) == normalize(frame)
    dead = {d.offset: d for d in decoded.dead_letters}
    assert len(dead) == len(decoded.dead_letters), "a message was dead-lettered twice"
    assert set(dead) == set(bad)
    for offset, reason in bad.items():
        letter = dead[offset]
        i = batch.offsets.index(offset)
        assert reason in letter.reason
        assert letter.topic == batch.topic
        assert letter.partition == batch.partitions[i]
        assert letter.timestamp_ms == batch.timestamps_ms[i]
        assert letter.key == batch.keys[i]
        assert letter.value == batch.values[i]
        assert letter.value is None or isinstance(letter.value, bytes)


@pytest.mark.parametrize("case", MALFORMED)
@pytest.mark.parametrize("layout", ["middle-of-batch", "alone"])
def test_malformed_message_is_dead_lettered(
    decoder: FrameDecoder, case: Malformed, layout: str, request: pytest.FixtureRequest
) -> None:
    if case.bug is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=case.bug))
    bad_value = case.build()
    if layout == "alone":
        values: list[bytes | None] = [bad_value]
        frames: dict[int, Frame] = {}
        bad_offset = FIRST_OFFSET
    else:
        good = frames_batch(BATCH_SIZE)
        values = [encode_message(f, 2) for f in good]
        values[BAD_INDEX] = bad_value
        frames = {FIRST_OFFSET + i: f for i, f in enumerate(good) if i != BAD_INDEX}
        bad_offset = FIRST_OFFSET + BAD_INDEX
    batch = raw_batch(values, partition=PARTITION, first_offset=FIRST_OFFSET)
    decoded = decoder.decode(batch)
    _assert_only_bad_dead(decoded, batch, frames, {bad_offset: case.reason})
    assert decoded.frames.schema == decoder.frame_schema | {
        "schema_id": pl.Int64(),
        "kafka_partition": pl.Int32(),
        "kafka_offset": pl.Int64(),
        "received_at": pl.Datetime("us", "UTC"),
    }


def test_many_malformed_messages_across_partitions_and_versions(decoder: FrameDecoder) -> None:
    cases = [c for p in MALFORMED for c in p.values if isinstance(c, Malformed) and c.bug is None]
    rng = random.Random(7)
    values: list[bytes | None] = []
    partitions: list[int] = []
    offsets: list[int] = []
    frames: dict[tuple[int, int], Frame] = {}
    bad: dict[tuple[int, int], str] = {}
    next_offset = {0: 0, 1: 500, 2: 10**12}
    for seq in range(120):
        partition = seq % 3
        offset = next_offset[partition]
        next_offset[partition] += 1
        partitions.append(partition)
        offsets.append(offset)
        if seq % 5 == 2:
            case = cases[(seq // 5) % len(cases)]
            values.append(case.build())
            bad[(partition, offset)] = case.reason
        else:
            version: Version = rng.choice([1, 2])
            frame = rack_frame(version, rack_id=f"sat-{partition}/rack-1", frame_seq=seq)
            values.append(encode_message(frame, version))
            frames[(partition, offset)] = as_v2(frame, version)
    batch = raw_batch(values, partition=partitions, offsets=offsets)
    decoded = decoder.decode(batch)
    got = {(r["kafka_partition"], r["kafka_offset"]): r for r in decoded.frames.iter_rows(named=True)}
    assert len(got) == decoded.frames.height
    assert set(got) == set(frames)
    for key, frame in frames.items():
        assert normalize(frame_values(got[key])) == normalize(frame)
    dead = {(d.partition, d.offset): d.reason for d in decoded.dead_letters}
    assert len(dead) == len(decoded.dead_letters)
    assert set(dead) == set(bad)
    for key, reason in bad.items():
        assert reason in dead[key]
    # Dead letters are reported in message order.
    positions = [batch.offsets.index(d.offset) for d in decoded.dead_letters if d.partition == 0]
    assert positions == sorted(positions)


BOOLEAN_BUG = (
    "KNOWN LIMITATION of the columnar fast path (README, 'What the codec proves'): "
    "an Avro boolean byte other than 0/1 (invalid Avro) is read as False by "
    "polars.read_avro and passes the size proof, while fastavro (the authoritative decoder) reads True; "
    "the message is neither dead-lettered nor decoded as fastavro decodes it"
)


@pytest.mark.xfail(strict=True, reason=BOOLEAN_BUG)
def test_boolean_byte_out_of_range_is_dead_lettered_or_decoded_as_fastavro(decoder: FrameDecoder) -> None:
    body = _body()
    stored_at = body.index(zigzag(len("fw-2.4.1")) + b"fw-2.4.1") - 1
    assert body[stored_at] == 0  # ``stored`` is False in the sentinel frame, firmware follows it
    bad_body = _replace(body, stored_at, 1, b"\x02")
    authoritative = decode_body(bad_body, 2)["stored"]
    assert authoritative is True
    values: list[bytes | None] = [encode_message(f, 2) for f in frames_batch(BATCH_SIZE)]
    values[BAD_INDEX] = wire_header(2) + bad_body
    rows = rows_by_offset(decoder.decode(raw_batch(values)))
    assert len(rows) >= BATCH_SIZE - 1
    if BAD_INDEX in rows:
        assert rows[BAD_INDEX]["stored"] == authoritative


def test_empty_batch_gives_empty_frames_with_full_schema(decoder: FrameDecoder) -> None:
    decoded = decoder.decode(raw_batch([]))
    assert decoded.frames.height == 0
    assert decoded.dead_letters == []
    assert list(decoded.frames.columns) == [*decoder.frame_schema.names(), *METADATA]


def test_all_messages_malformed(decoder: FrameDecoder) -> None:
    values: list[bytes | None] = [None, b"", wire_header(2), wire_header(7) + b"x", b"\x05abcdef"]
    decoded = decoder.decode(raw_batch(values))
    assert decoded.frames.height == 0
    assert [d.offset for d in decoded.dead_letters] == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------- evolution


def test_v1_and_v2_mixed_decode_to_v2_columns_with_defaults(decoder: FrameDecoder) -> None:
    versions: list[Version] = [1 if i % 3 else 2 for i in range(40)]
    frames = [
        rack_frame(v, frame_seq=i, firmware="fw-9") if v == 2 else rack_frame(1, frame_seq=i)
        for i, v in enumerate(versions)
    ]
    batch = raw_batch([encode_message(f, v) for f, v in zip(frames, versions, strict=True)])
    decoded = decoder.decode(batch)
    assert decoded.dead_letters == []
    assert decoded.frames.schema == avro_polars.frame_schema(raw_schema(2)) | {
        "schema_id": pl.Int64(),
        "kafka_partition": pl.Int32(),
        "kafka_offset": pl.Int64(),
        "received_at": pl.Datetime("us", "UTC"),
    }
    rows = rows_by_offset(decoded)
    assert set(rows) == set(range(40))
    for offset, version in enumerate(versions):
        row = rows[offset]
        assert row["schema_id"] == version
        if version == 1:
            assert row["firmware"] == "unknown"
            assert {g["nvlink_errors"] for g in row["gpus"]} == {0}
            assert {g["row_remap_pending"] for g in row["gpus"]} == {False}
        else:
            assert row["firmware"] == "fw-9"
            assert [g["nvlink_errors"] for g in row["gpus"]] == [n + g for n in range(8) for g in range(8)]
            assert sum(g["row_remap_pending"] for g in row["gpus"]) == 8
        assert normalize(frame_values(row)) == normalize(as_v2(frames[offset], version))


def test_single_v1_message_gets_v2_defaults(decoder: FrameDecoder) -> None:
    frame = rack_frame(1, frame_seq=7)
    decoded = decoder.decode(raw_batch([encode_message(frame, 1)]))
    (row,) = decoded.frames.iter_rows(named=True)
    assert row["firmware"] == "unknown"
    assert row["gpus"][5]["nvlink_errors"] == 0
    assert row["gpus"][3]["row_remap_pending"] is False
    assert normalize(frame_values(row)) == normalize(as_v2(frame, 1))


def test_values_and_metadata_round_trip_exactly(decoder: FrameDecoder) -> None:
    frames = [
        rack_frame(
            2,
            rack_id=f"sat-00{i % 4}/rack-{i % 3}",
            boot_epoch=i % 5,
            frame_seq=i * 1_000_003,
            sampled_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=i * 123_456_789),
            stored=i % 2 == 0,
            ground_station=None if i % 3 == 0 else f"gs-{i}",
            power={"bus_w": 0.1 * i, "solar_w": -1.0 / 3, "battery_soc": 0.3, "in_eclipse": i % 2 == 1},
            thermal={"radiator_c": 1e-3 * i, "coolant_inlet_c": 1e30, "coolant_outlet_c": -7.7},
            radiation={"seu_count": 2**62 + i, "dose_rate_mrad_h": 3.14159},
        )
        for i in range(30)
    ]
    timestamps = [DEFAULT_RECEIVED_MS + 1_000 * i for i in range(30)]
    batch = raw_batch([encode_message(f, 2) for f in frames], partition=5, first_offset=77, timestamps_ms=timestamps)
    decoded = decoder.decode(batch)
    assert decoded.dead_letters == []
    rows = rows_by_offset(decoded)
    for i, frame in enumerate(frames):
        row = rows[77 + i]
        assert row["kafka_partition"] == 5
        assert row["schema_id"] == 2
        assert row["received_at"] == datetime.fromtimestamp(timestamps[i] / 1000, tz=UTC)
        assert row["sampled_at"] == frame["sampled_at"]
        assert row["power"]["bus_w"] == f32(0.1 * i)
        assert normalize(frame_values(row)) == normalize(frame)


# ---------------------------------------------------------------------------------------------- properties

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOAT32 = st.floats(width=32)
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.builds(lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(200, 3_000)),
)
SAMPLED_AT = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


def gpu_strategy(version: Version) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "node": INT32,
        "gpu": INT32,
        "util_pct": FLOAT32,
        "mem_used_mib": INT32,
        "mem_total_mib": INT32,
        "power_w": FLOAT32,
        "temp_c": FLOAT32,
        "hbm_temp_c": FLOAT32,
        "sm_clock_mhz": INT32,
        "ecc_sbe": INT64,
        "ecc_dbe": INT64,
        "xid": st.none() | INT32,
        "throttle_reasons": INT32,
        "tenant": st.none() | TEXT,
    }
    if version == 2:
        fields["nvlink_errors"] = INT64
        fields["row_remap_pending"] = st.booleans()
    return st.fixed_dictionaries(fields)


def frame_strategy(version: Version) -> st.SearchStrategy[Frame]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "satellite_id": TEXT,
        "rack_id": TEXT,
        "boot_epoch": INT32,
        "frame_seq": INT64,
        "sampled_at": SAMPLED_AT,
        "stored": st.booleans(),
        "ground_station": st.none() | TEXT,
        "power": st.fixed_dictionaries(
            {"bus_w": FLOAT32, "solar_w": FLOAT32, "battery_soc": FLOAT32, "in_eclipse": st.booleans()}
        ),
        "thermal": st.fixed_dictionaries(
            {"radiator_c": FLOAT32, "coolant_inlet_c": FLOAT32, "coolant_outlet_c": FLOAT32}
        ),
        "radiation": st.fixed_dictionaries({"seu_count": INT64, "dose_rate_mrad_h": FLOAT32}),
        "gpus": st.lists(gpu_strategy(version), max_size=6),
    }
    if version == 2:
        fields["firmware"] = TEXT
    return st.fixed_dictionaries(fields)


VERSIONED_FRAME = st.one_of(
    st.tuples(st.just(1), frame_strategy(1)),
    st.tuples(st.just(2), frame_strategy(2)),
)


class SlowPathCounter(FrameDecoder):
    """A FrameDecoder that counts the messages it had to decode one at a time with fastavro."""

    slow_messages = 0

    def _decode_slowly(
        self, plan: Any, items: list[tuple[int, memoryview]]
    ) -> tuple[list[pl.DataFrame], list[tuple[int, str]]]:
        self.slow_messages += len(items)
        return super()._decode_slowly(plan, items)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(VERSIONED_FRAME, min_size=2, max_size=6))
def test_fast_path_matches_fastavro_per_message(items: list[tuple[Version, Frame]]) -> None:
    decoder = SlowPathCounter(registry())
    values: list[bytes | None] = [encode_message(f, v) for v, f in items]
    decoded = decoder.decode(raw_batch(values))
    assert decoded.dead_letters == []
    # Valid messages are all proven by the columnar fast path; none needs the per-message fallback.
    assert decoder.slow_messages == 0
    rows = rows_by_offset(decoded)
    assert set(rows) == set(range(len(items)))
    for offset, (version, frame) in enumerate(items):
        value = values[offset]
        assert value is not None
        expected = decode_body(value[5:], version)
        assert normalize(frame_values(rows[offset])) == normalize(expected)
        assert normalize(expected) == normalize(as_v2(frame, version))


Mutation = tuple[str, int, int]
MUTATION = st.tuples(
    st.sampled_from(["flip", "set", "truncate", "insert", "delete"]),
    st.integers(0, 10_000),
    st.integers(0, 255),
)


def mutate(value: bytes, mutation: Mutation) -> bytes:
    kind, position, byte = mutation
    if not value:
        return bytes([byte])
    at = position % (len(value) + 1)
    if kind == "flip":
        at = position % len(value)
        return value[:at] + bytes([value[at] ^ (1 << (byte % 8))]) + value[at + 1 :]
    if kind == "set":
        at = position % len(value)
        return value[:at] + bytes([byte]) + value[at + 1 :]
    if kind == "truncate":
        return value[:at]
    if kind == "insert":
        return value[:at] + bytes([byte]) * (1 + byte % 4) + value[at:]
    return value[:at] + value[at + 1 + byte % 8 :]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(VERSIONED_FRAME, min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 20), MUTATION), max_size=6),
    st.integers(1, 20),
)
def test_mutated_messages_are_decoded_or_dead_lettered_exactly_once(
    items: list[tuple[Version, Frame]], mutations: list[tuple[int, Mutation]], copies: int
) -> None:
    decoder = FrameDecoder(registry())
    # Repeat the frames so that groups are large enough for the fast path and its bisection.
    values: list[bytes | None] = [encode_message(f, v) for _ in range(copies) for v, f in items]
    originals = list(values)
    for index, mutation in mutations:
        i = index % len(values)
        value = values[i]
        assert value is not None
        mutated = mutate(value, mutation)
        values[i] = mutated
    offsets = [10 * i + 3 for i in range(len(values))]
    batch = raw_batch(values, offsets=offsets, partition=[i % 2 for i in range(len(values))])
    decoded = decoder.decode(batch)
    decoded_offsets = decoded.frames["kafka_offset"].to_list()
    dead_offsets = [d.offset for d in decoded.dead_letters]
    assert len(set(decoded_offsets)) == len(decoded_offsets)
    assert len(set(dead_offsets)) == len(dead_offsets)
    assert set(decoded_offsets).isdisjoint(dead_offsets)
    assert sorted(decoded_offsets + dead_offsets) == offsets
    for i, offset in enumerate(offsets):
        if values[i] == originals[i]:
            assert offset in decoded_offsets, "an untouched message was not decoded"
    for letter in decoded.dead_letters:
        assert letter.value == values[offsets.index(letter.offset)]
        assert letter.partition == offsets.index(letter.offset) % 2
        assert letter.reason
    assert decoded.frames["kafka_partition"].to_list() == [offsets.index(o) % 2 for o in decoded_offsets]


# ---------------------------------------------------------------------------------------------- encoded_size


def _fastavro_size(schema: Any, value: Any) -> int:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return len(out.getvalue())


@settings(max_examples=60, deadline=None)
@given(st.lists(VERSIONED_FRAME, min_size=1, max_size=4))
def test_record_size_equals_fastavro_encoding_length(items: list[tuple[Version, Frame]]) -> None:
    for version in (1, 2):
        frames = [f for v, f in items if v == version]
        if not frames:
            continue
        raw = raw_schema(version)
        table = pl.DataFrame(frames, schema=avro_polars.frame_schema(raw), orient="row")
        sizes = table.select(avro_polars.record_size(raw)).to_series().to_list()
        assert sizes == [len(encode_body(f, version)) for f in frames]


PRIMITIVE_CASES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    ("int", INT32),
    ("long", INT64),
    ("float", FLOAT32),
    ("double", st.floats()),
    ("boolean", st.booleans()),
    ("string", TEXT),
    ("bytes", st.binary(max_size=300)),
    (["null", "long"], st.none() | INT64),
    (["null", "string"], st.none() | TEXT),
    ({"type": "array", "items": "long"}, st.lists(INT64, max_size=80)),
    ({"type": "array", "items": ["null", "string"]}, st.lists(st.none() | TEXT, max_size=5)),
]


@pytest.mark.parametrize(
    ("schema", "values"),
    PRIMITIVE_CASES,
    ids=[str(s) if isinstance(s, str | list) else f"array-of-{s['items']}" for s, _ in PRIMITIVE_CASES],
)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_encoded_size_of_each_type_equals_fastavro(
    schema: Any, values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    drawn = data.draw(st.lists(values, min_size=1, max_size=8))
    table = pl.DataFrame({"v": pl.Series(drawn, dtype=avro_polars.polars_dtype(schema))})
    sizes = table.with_columns(avro_polars.encoded_size(schema, pl.col("v")).alias("size"))["size"].to_list()
    assert sizes == [_fastavro_size(schema, v) for v in drawn]


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        -1,
        63,
        -64,
        64,
        -65,
        8191,
        8192,
        -8193,
        2**31 - 1,
        -(2**31),
        2**62 - 1,
        2**62,
        -(2**62),
        -(2**62) - 1,
        2**63 - 1,
        -(2**63),
    ],
)
def test_encoded_size_of_long_boundaries(value: int) -> None:
    table = pl.DataFrame({"v": pl.Series([value], dtype=pl.Int64)})
    size = table.with_columns(avro_polars.encoded_size("long", pl.col("v")).alias("size"))["size"].item()
    assert size == _fastavro_size("long", value) == len(zigzag(value))


def test_empty_and_non_empty_arrays_size(decoder: FrameDecoder) -> None:
    frame = rack_frame(2, gpus=[])
    assert (
        len(encode_body(frame, 2))
        == pl.DataFrame([frame], schema=avro_polars.frame_schema(raw_schema(2)), orient="row")
        .select(avro_polars.record_size(raw_schema(2)))
        .item()
    )
    decoded = decoder.decode(raw_batch([encode_message(frame, 2), encode_message(rack_frame(2, frame_seq=1), 2)]))
    rows = rows_by_offset(decoded)
    assert rows[0]["gpus"] == []
    assert len(rows[1]["gpus"]) == 64
