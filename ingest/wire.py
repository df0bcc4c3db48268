"""The Confluent wire format: byte 0 is 0x00, bytes 1-4 the big-endian schema id, then Avro binary."""

from __future__ import annotations

MAGIC_BYTE = 0
HEADER_SIZE = 5


def split_header(value: bytes | None) -> tuple[int, memoryview] | str:
    """Return ``(schema_id, avro_body)`` for a framed message, or the reason it is not one."""
    if value is None:
        return "empty message (tombstone)"
    if len(value) < HEADER_SIZE:
        return f"message of {len(value)} bytes is shorter than the 5-byte wire header"
    if value[0] != MAGIC_BYTE:
        return f"bad magic byte 0x{value[0]:02x} (expected 0x00)"
    return int.from_bytes(value[1:HEADER_SIZE], "big"), memoryview(value)[HEADER_SIZE:]


def header(schema_id: int) -> bytes:
    """The 5-byte wire header: magic byte 0, then the big-endian schema id."""
    return bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big")


def frame(schema_id: int, body: bytes) -> bytes:
    """Frame an Avro body with the 5-byte wire header."""
    return header(schema_id) + body


def zigzag_long(value: int) -> bytes:
    """Avro's encoding of an int or long: zigzag, then little-endian base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
