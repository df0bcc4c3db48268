"""A hand-written Avro encoder for the ``gpus`` array, about 10x faster than fastavro's.

It is used only when the contract's ``GpuSample`` has exactly the field layout of v1 or v2 below;
:class:`~simulator.codec.ContractCodec` falls back to fastavro otherwise, and the tests check that
both encoders write identical bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from ingest.wire import zigzag_long as zigzag_varint

GpuEncoder = Callable[[Sequence[dict[str, Any]]], bytes]

_V1_FIELDS: list[tuple[str, object]] = [
    ("node", "int"),
    ("gpu", "int"),
    ("util_pct", "float"),
    ("mem_used_mib", "int"),
    ("mem_total_mib", "int"),
    ("power_w", "float"),
    ("temp_c", "float"),
    ("hbm_temp_c", "float"),
    ("sm_clock_mhz", "int"),
    ("ecc_sbe", "long"),
    ("ecc_dbe", "long"),
    ("xid", ["null", "int"]),
    ("throttle_reasons", "int"),
    ("tenant", ["null", "string"]),
]
_V2_FIELDS = [*_V1_FIELDS[:12], ("nvlink_errors", "long"), ("row_remap_pending", "boolean"), *_V1_FIELDS[12:]]

_FLOAT = struct.Struct("<f").pack
_FLOAT3 = struct.Struct("<fff").pack
_NULL = b"\x00"
_TRUE, _FALSE = b"\x01", b"\x00"


_SMALL = [zigzag_varint(i) for i in range(1 << 17)]
_SMALL_LIMIT = len(_SMALL)


def _varint(value: int) -> bytes:
    return _SMALL[value] if 0 <= value < _SMALL_LIMIT else zigzag_varint(value)


_STRINGS: dict[str | None, bytes] = {None: _NULL}


def _optional_string(value: str | None) -> bytes:
    encoded = _STRINGS.get(value)
    if encoded is None:
        raw = value.encode() if value is not None else b""
        encoded = b"\x02" + zigzag_varint(len(raw)) + raw
        if len(_STRINGS) < 4096:
            _STRINGS[value] = encoded
    return encoded


def _optional_int(value: int | None) -> bytes:
    return _NULL if value is None else b"\x02" + _varint(value)


def _encode(recs: Sequence[dict[str, Any]], v2: bool) -> bytes:
    varint = _varint
    parts = [_varint(len(recs))] if recs else []
    append = parts.append
    for rec in recs:
        append(varint(rec["node"]) + varint(rec["gpu"]) + _FLOAT(rec["util_pct"]))
        append(varint(rec["mem_used_mib"]) + varint(rec["mem_total_mib"]))
        append(_FLOAT3(rec["power_w"], rec["temp_c"], rec["hbm_temp_c"]))
        append(varint(rec["sm_clock_mhz"]) + varint(rec["ecc_sbe"]) + varint(rec["ecc_dbe"]))
        append(_optional_int(rec["xid"]))
        if v2:
            append(varint(rec["nvlink_errors"]) + (_TRUE if rec["row_remap_pending"] else _FALSE))
        append(varint(rec["throttle_reasons"]) + _optional_string(rec["tenant"]))
    append(b"\x00")
    return b"".join(parts)


def _encode_v1(recs: Sequence[dict[str, Any]]) -> bytes:
    return _encode(recs, False)


def _encode_v2(recs: Sequence[dict[str, Any]]) -> bytes:
    return _encode(recs, True)


def gpu_encoder(gpus_field: dict[str, Any]) -> GpuEncoder | None:
    """The fast encoder for this schema's ``gpus`` field, or None when its layout is unknown."""
    items = gpus_field.get("type", {}).get("items", {})
    layout = [(f["name"], f["type"]) for f in items.get("fields", [])] if isinstance(items, dict) else []
    if layout == _V1_FIELDS:
        return _encode_v1
    if layout == _V2_FIELDS:
        return _encode_v2
    return None
