"""Builders for valid ``RackFrame`` dicts (contract v1 and v2) and their Confluent wire-format messages.

Every message the tests feed the pipeline is produced from the contract's own ``.avsc`` files, so a
test never encodes with a schema the racks do not use.
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

import fastavro

from ingest.codec import RawBatch
from ingest.registry import SchemaRegistry

Version = Literal[1, 2]
Frame = dict[str, Any]

NODES = 8
GPUS_PER_NODE = 8
GPUS_PER_FRAME = NODES * GPUS_PER_NODE
TOPIC = "rack-telemetry"
DEFAULT_SAMPLED_AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
# Kafka timestamps default to one minute after the default sample time (a plausible live frame).
DEFAULT_RECEIVED_MS = int((DEFAULT_SAMPLED_AT + timedelta(minutes=1)).timestamp() * 1000)


def contract_dir() -> Path:
    """The telemetry contract directory (``ORBITWATCH_CONTRACT_DIR`` overrides the shared checkout)."""
    override = os.environ.get("ORBITWATCH_CONTRACT_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "shared" / "contract"


@cache
def raw_schema(version: Version) -> dict[str, Any]:
    """The contract's schema JSON for ``version`` (schema id == version, per ``registry.json``)."""
    index: dict[str, str] = json.loads((contract_dir() / "registry.json").read_text())
    loaded: dict[str, Any] = json.loads((contract_dir() / index[str(version)]).read_text())
    return loaded


@cache
def parsed_schema(version: Version) -> Any:
    """fastavro's parsed form of the contract schema ``version``."""
    return fastavro.parse_schema(raw_schema(version))


def registry() -> SchemaRegistry:
    """A registry over the contract files (no URL)."""
    return SchemaRegistry(contract_dir())


def gpu_sample(node: int, gpu: int, version: Version = 2, **overrides: Any) -> dict[str, Any]:
    """One plausible ``GpuSample``; values are exactly representable as float32."""
    sample: dict[str, Any] = {
        "node": node,
        "gpu": gpu,
        "util_pct": 50.0 + gpu,
        "mem_used_mib": 1024 * (gpu + 1),
        "mem_total_mib": 81_920,
        "power_w": 300.0 + node,
        "temp_c": 55.5,
        "hbm_temp_c": 60.25,
        "sm_clock_mhz": 1_410,
        "ecc_sbe": node * 10 + gpu,
        "ecc_dbe": 0,
        "xid": None if gpu % 2 == 0 else 79,
        "throttle_reasons": 0x20 if node == 0 else 0,
        "tenant": None if gpu == 7 else f"tenant-{node}",
    }
    if version == 2:
        sample["nvlink_errors"] = node + gpu
        sample["row_remap_pending"] = gpu == 3
    sample.update(overrides)
    return sample


def rack_frame(
    version: Version = 2,
    *,
    rack_id: str = "sat-0001/rack-1",
    boot_epoch: int = 0,
    frame_seq: int = 0,
    sampled_at: datetime = DEFAULT_SAMPLED_AT,
    gpus: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> Frame:
    """A valid ``RackFrame`` for ``version`` with 64 GPUs unless ``gpus`` is given; ``overrides`` win."""
    frame: Frame = {
        "satellite_id": rack_id.split("/", 1)[0],
        "rack_id": rack_id,
        "boot_epoch": boot_epoch,
        "frame_seq": frame_seq,
        "sampled_at": sampled_at,
        "stored": False,
        "ground_station": "gs-svalbard",
        "power": {"bus_w": 12_000.0, "solar_w": 15_000.5, "battery_soc": 0.75, "in_eclipse": False},
        "thermal": {"radiator_c": -20.5, "coolant_inlet_c": 18.0, "coolant_outlet_c": 32.25},
        "radiation": {"seu_count": 12_345, "dose_rate_mrad_h": 1.5},
        "gpus": gpus
        if gpus is not None
        else [gpu_sample(n, g, version) for n in range(NODES) for g in range(GPUS_PER_NODE)],
    }
    if version == 2:
        frame["firmware"] = "fw-2.4.1"
    frame.update(overrides)
    return frame


def encode_body(frame: Frame, version: Version) -> bytes:
    """The Avro binary encoding of ``frame`` with contract schema ``version`` (no wire header)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed_schema(version), frame)
    return out.getvalue()


def wire_header(schema_id: int) -> bytes:
    """Confluent header: magic byte 0, then the big-endian 4-byte schema id."""
    return b"\x00" + schema_id.to_bytes(4, "big")


def encode_message(frame: Frame, version: Version) -> bytes:
    """A wire-format Kafka value for ``frame`` written with schema id ``version``."""
    return wire_header(version) + encode_body(frame, version)


def decode_body(body: bytes, version: Version, reader_version: Version = 2) -> Frame:
    """fastavro's per-message decode of an Avro body, resolved to ``reader_version``."""
    decoded = fastavro.schemaless_reader(io.BytesIO(body), parsed_schema(version), parsed_schema(reader_version))
    assert isinstance(decoded, dict)
    return decoded


def raw_batch(
    values: list[bytes | None],
    *,
    topic: str = TOPIC,
    partition: int | list[int] = 0,
    first_offset: int = 0,
    offsets: list[int] | None = None,
    timestamps_ms: list[int] | None = None,
    keys: list[bytes | None] | None = None,
) -> RawBatch:
    """A ``RawBatch`` of ``values``: consecutive offsets from ``first_offset`` unless ``offsets`` given."""
    n = len(values)
    return RawBatch(
        topic=topic,
        partitions=list(partition) if isinstance(partition, list) else [partition] * n,
        offsets=list(offsets) if offsets is not None else list(range(first_offset, first_offset + n)),
        timestamps_ms=list(timestamps_ms) if timestamps_ms is not None else [DEFAULT_RECEIVED_MS] * n,
        keys=list(keys) if keys is not None else [f"key-{i}".encode() for i in range(n)],
        values=list(values),
    )


def frames_batch(count: int, version: Version = 2, *, rack_id: str = "sat-0001/rack-1") -> list[Frame]:
    """``count`` distinct frames of one rack, consecutive ``frame_seq`` one second apart."""
    return [
        rack_frame(
            version,
            rack_id=rack_id,
            frame_seq=seq,
            sampled_at=DEFAULT_SAMPLED_AT + timedelta(seconds=seq),
        )
        for seq in range(count)
    ]
