"""The contract's schemas, parsed once, and the Confluent wire format.

A frame is encoded in two parts that concatenate to the full Avro record: the *head* (identity,
``stored``, ``firmware`` on v2, ``ground_station``), written at delivery, and the *tail* (power, thermal,
radiation, gpus), written once when the frame is sampled. Avro records are the concatenation of
their fields, so ``head + tail`` is exactly what ``schemaless_writer`` would write for the whole frame.
When the last field is ``gpus`` with a known layout, that array is written by :mod:`simulator.fastpath`.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import fastavro

from ingest.wire import header as wire_header
from simulator.fastpath import GpuEncoder, gpu_encoder

V1_SCHEMA_ID = 1
V2_SCHEMA_ID = 2
MAGIC = b"\x00"
HEADER_SIZE = 5
_TAIL_START_FIELD = "power"


def default_contract_dir() -> Path:
    """``$ORBITWATCH_CONTRACT_DIR``, else ``shared/contract`` next to the repository."""
    env = os.environ.get("ORBITWATCH_CONTRACT_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "contract"


def _record(schema: dict[str, Any], name: str, fields: list[dict[str, Any]]) -> Any:
    namespace = schema.get("namespace", "")
    return fastavro.parse_schema({"type": "record", "name": name, "namespace": namespace, "fields": fields})


class _TailWriter:
    """Writes the tail fields, the ``gpus`` array by the fast path when its layout allows."""

    def __init__(self, schema: dict[str, Any], fields: list[dict[str, Any]]) -> None:
        self.fast: GpuEncoder | None = None
        if fields[-1]["name"] == "gpus":
            self.fast = gpu_encoder(fields[-1])
        self.full = _record(schema, "FrameTail", fields)
        self.rest = _record(schema, "FrameTail", fields[:-1]) if self.fast else self.full


class ContractCodec:
    """Parsed writer schemas by id, split encoders, and a strict decoder for checks."""

    def __init__(self, contract_dir: Path | None = None) -> None:
        directory = contract_dir if contract_dir is not None else default_contract_dir()
        registry: dict[str, str] = json.loads((directory / "registry.json").read_text())
        self.schemas: dict[int, Any] = {}
        self._heads: dict[int, Any] = {}
        self._tails: dict[int, _TailWriter] = {}
        for key, filename in registry.items():
            raw = json.loads((directory / filename).read_text())
            schema_id = int(key)
            fields: list[dict[str, Any]] = raw["fields"]
            cut = next(i for i, field in enumerate(fields) if field["name"] == _TAIL_START_FIELD)
            self.schemas[schema_id] = fastavro.parse_schema(raw)
            self._heads[schema_id] = _record(raw, "FrameHead", fields[:cut])
            self._tails[schema_id] = _TailWriter(raw, fields[cut:])
        missing = {V1_SCHEMA_ID, V2_SCHEMA_ID} - self.schemas.keys()
        if missing:
            raise ValueError(f"registry in {directory} lacks schema ids {sorted(missing)}")
        self.headers = {schema_id: wire_header(schema_id) for schema_id in self.schemas}
        self._buffer = io.BytesIO()

    def _write(self, schema: Any, record: dict[str, Any]) -> bytes:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        fastavro.schemaless_writer(buffer, schema, record)
        return buffer.getvalue()

    def encode_head(self, schema_id: int, record: dict[str, Any]) -> bytes:
        """Avro bytes of the fields before ``power``."""
        return self._write(self._heads[schema_id], record)

    def encode_tail(self, schema_id: int, record: dict[str, Any], *, fast: bool = True) -> bytes:
        """Avro bytes of ``power`` and the fields after it (``fast=False``: fastavro only)."""
        writer = self._tails[schema_id]
        if writer.fast is None or not fast:
            return self._write(writer.full, record)
        return self._write(writer.rest, record) + writer.fast(record["gpus"])

    def encode(self, schema_id: int, frame: dict[str, Any]) -> bytes:
        """A whole wire-format message value for ``frame``."""
        return self.headers[schema_id] + self._write(self.schemas[schema_id], frame)

    def decode(self, value: bytes) -> tuple[int, dict[str, Any]]:
        """Strictly decode a message value; raise ``ValueError`` unless it is exactly one frame."""
        if len(value) < HEADER_SIZE or value[:1] != MAGIC:
            raise ValueError("bad magic byte")
        schema_id = struct.unpack(">I", value[1:HEADER_SIZE])[0]
        schema = self.schemas.get(schema_id)
        if schema is None:
            raise ValueError(f"unknown schema id {schema_id}")
        body = io.BytesIO(value[HEADER_SIZE:])
        try:
            record = fastavro.schemaless_reader(body, schema, None)
        except Exception as exc:
            raise ValueError(f"undecodable body: {exc!r}") from exc
        if body.tell() != len(value) - HEADER_SIZE:
            raise ValueError("trailing bytes after the record")
        if not isinstance(record, dict):
            raise ValueError("body is not a record")
        return schema_id, record

    def is_strictly_decodable(self, value: bytes) -> bool:
        """True when :meth:`decode` accepts ``value``."""
        try:
            self.decode(value)
        except ValueError:
            return False
        return True
