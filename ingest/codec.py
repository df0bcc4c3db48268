"""The Avro codec: a batch of Kafka messages to one polars frame table, malformed messages set aside.

Fast path: the bodies of one schema id are spliced into an in-memory Avro object container (one block)
and read with ``polars.read_avro``. Each decoded row's encoded size is then recomputed from its values
and compared with its message's length, which proves that every message was decoded from exactly its own
bytes. A group whose fast decode fails is bisected; small failing pieces, and rows whose size does not
match, are decoded one message at a time with fastavro, which is authoritative: what it cannot decode
exactly (error, or bytes left over) becomes a dead letter with its reason.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fastavro
import polars as pl

from ingest import avro_polars
from ingest.errors import UnsupportedSchema
from ingest.registry import SchemaRegistry, WriterSchema
from ingest.wire import split_header, zigzag_long

_FALLBACK_CHUNK = 128
METADATA_SCHEMA = pl.Schema(
    {
        "schema_id": pl.Int64(),
        "kafka_partition": pl.Int32(),
        "kafka_offset": pl.Int64(),
        "received_at": pl.Datetime("us", "UTC"),
    }
)


@dataclass(slots=True)
class RawBatch:
    """Messages of one topic as parallel columns; row i of each list is message i."""

    topic: str
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None) -> None:
        """Add one message at the end."""
        self.partitions.append(partition)
        self.offsets.append(offset)
        self.timestamps_ms.append(timestamp_ms)
        self.keys.append(key)
        self.values.append(value)

    def next_offsets(self) -> dict[int, int]:
        """Per partition, the offset after the last message of it in the batch (what a commit reaches)."""
        ends: dict[int, int] = {}
        for partition, offset in zip(self.partitions, self.offsets, strict=True):
            ends[partition] = max(ends.get(partition, -1), offset + 1)
        return ends


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be decoded, with its coordinates, raw bytes and reason."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Decoded frames (reader schema columns plus ``METADATA_SCHEMA``) and the dead letters."""

    frames: pl.DataFrame
    dead_letters: list[DeadLetter]


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything needed to decode one schema id, prepared once."""

    writer: WriterSchema
    header: bytes
    sync: bytes
    size: pl.Expr | None
    resolve: list[pl.Expr] | None


class FrameDecoder:
    """Decodes batches of framed Avro messages into the registry's reader schema."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._registry = registry
        self._reader = registry.reader
        self.frame_schema = avro_polars.frame_schema(registry.reader.raw)
        self._plans: dict[int, _Plan] = {}

    def decode(self, batch: RawBatch) -> DecodedBatch:
        """Decode every message of ``batch``; malformed ones become dead letters, never exceptions."""
        groups: dict[int, list[int]] = {}
        bodies: list[memoryview | None] = [None] * len(batch)
        dead: list[tuple[int, str]] = []
        for i, value in enumerate(batch.values):
            header = split_header(value)
            if isinstance(header, str):
                dead.append((i, header))
                continue
            schema_id, bodies[i] = header
            groups.setdefault(schema_id, []).append(i)
        parts: list[pl.DataFrame] = []
        for schema_id, rows in groups.items():
            plan = self._plan(schema_id)
            if plan is None:
                dead.extend((i, f"unknown schema id {schema_id}") for i in rows)
                continue
            decoded, failed = self._decode_group(plan, [(i, body) for i in rows if (body := bodies[i]) is not None])
            parts.extend(decoded)
            dead.extend(failed)
        frames = pl.concat(parts) if parts else pl.DataFrame(schema=self.frame_schema | {"_row": pl.Int64})
        return DecodedBatch(frames=_with_metadata(frames, batch), dead_letters=_dead_letters(batch, dead))

    def _plan(self, schema_id: int) -> _Plan | None:
        plan = self._plans.get(schema_id)
        if plan is None:
            writer = self._registry.get(schema_id)
            if writer is None:
                return None
            plan = self._plans[schema_id] = _make_plan(writer, self._reader)
        return plan

    def _decode_group(
        self, plan: _Plan, items: list[tuple[int, memoryview]]
    ) -> tuple[list[pl.DataFrame], list[tuple[int, str]]]:
        """Whole group in one read; if that fails, chunks; a failing chunk, message by message."""
        if plan.size is None or plan.resolve is None:
            return self._decode_slowly(plan, items)
        with _rust_panics_silenced():
            whole = self._decode_fast(plan, items)
        if whole is not None:
            return whole
        frames: list[pl.DataFrame] = []
        dead: list[tuple[int, str]] = []
        with _rust_panics_silenced():
            for start in range(0, len(items), _FALLBACK_CHUNK):
                chunk = items[start : start + _FALLBACK_CHUNK]
                decoded = self._decode_fast(plan, chunk) or self._decode_slowly(plan, chunk)
                frames.extend(decoded[0])
                dead.extend(decoded[1])
        return frames, dead

    def _decode_fast(
        self, plan: _Plan, items: list[tuple[int, memoryview]]
    ) -> tuple[list[pl.DataFrame], list[tuple[int, str]]] | None:
        """Columnar decode with the per-message size proof; None when polars cannot read the bytes."""
        assert plan.size is not None
        assert plan.resolve is not None
        try:
            decoded = _read_container(plan, [body for _, body in items])
        except BaseException as exc:  # polars raises ComputeError, OSError or a pyo3 PanicException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return None
        rows = pl.Series("_row", [i for i, _ in items], pl.Int64)
        lengths = pl.Series("_len", [len(body) for _, body in items], pl.Int64)
        exact = (decoded.select(plan.size).to_series() == lengths).fill_null(False)  # unprovable counts as wrong
        if bool(exact.all()):
            return [decoded.select(plan.resolve).with_columns(rows)], []
        good = decoded.filter(exact).select(plan.resolve).with_columns(rows.filter(exact))
        retry = [item for item, ok in zip(items, exact.to_list(), strict=True) if not ok]
        slow, dead = self._decode_slowly(plan, retry)
        return [good, *slow], dead

    def _decode_slowly(
        self, plan: _Plan, items: list[tuple[int, memoryview]]
    ) -> tuple[list[pl.DataFrame], list[tuple[int, str]]]:
        records: list[dict[str, Any]] = []
        rows: list[int] = []
        dead: list[tuple[int, str]] = []
        for i, body in items:
            stream = io.BytesIO(body)
            try:
                record = fastavro.schemaless_reader(stream, plan.writer.parsed, self._reader.parsed)
            except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, UnicodeError...
                dead.append((i, f"undecodable Avro for schema id {plan.writer.schema_id}: {_describe(exc)}"))
                continue
            if stream.tell() != len(body):
                extra = len(body) - stream.tell()
                dead.append((i, f"{extra} trailing bytes after the Avro record (schema id {plan.writer.schema_id})"))
                continue
            records.append(record)  # type: ignore[arg-type]  # a RackFrame record decodes to a dict
            rows.append(i)
        if not records:
            return [], dead
        try:
            frames = [pl.DataFrame(records, schema=self.frame_schema, orient="row")]
        except pl.exceptions.PolarsError:  # some record holds a value its column cannot (an Avro int > 2**31)
            frames, rows = self._tabulate_one_by_one(plan, records, rows, dead)
            if not frames:
                return [], dead
        return [pl.concat(frames).with_columns(pl.Series("_row", rows, pl.Int64))], dead

    def _tabulate_one_by_one(
        self, plan: _Plan, records: list[dict[str, Any]], rows: list[int], dead: list[tuple[int, str]]
    ) -> tuple[list[pl.DataFrame], list[int]]:
        frames: list[pl.DataFrame] = []
        kept: list[int] = []
        for record, i in zip(records, rows, strict=True):
            try:
                frames.append(pl.DataFrame([record], schema=self.frame_schema, orient="row"))
                kept.append(i)
            except pl.exceptions.PolarsError as exc:
                detail = str(exc).splitlines()[0][:160]
                dead.append((i, f"value out of range for its Avro type (schema id {plan.writer.schema_id}): {detail}"))
        return frames, kept


def _make_plan(writer: WriterSchema, reader: WriterSchema) -> _Plan:
    sync = os.urandom(16)
    schema_json = json.dumps(avro_polars.container_schema_json(writer.raw)).encode()
    header = bytearray(b"Obj\x01")
    header += zigzag_long(2)
    for key, value in ((b"avro.schema", schema_json), (b"avro.codec", b"null")):
        header += zigzag_long(len(key)) + key + zigzag_long(len(value)) + value
    header += zigzag_long(0) + sync
    try:
        size: pl.Expr | None = avro_polars.record_size(writer.raw)
        resolve: list[pl.Expr] | None = avro_polars.resolution(writer.raw, reader.raw)
    except UnsupportedSchema:
        size = resolve = None
    return _Plan(writer=writer, header=bytes(header), sync=sync, size=size, resolve=resolve)


def _read_container(plan: _Plan, bodies: list[memoryview]) -> pl.DataFrame:
    total = sum(len(b) for b in bodies)
    parts: list[bytes | memoryview] = [plan.header, zigzag_long(len(bodies)), zigzag_long(total), *bodies, plan.sync]
    return pl.read_avro(io.BytesIO(b"".join(parts)))


@contextmanager
def _rust_panics_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while polars reads untrusted bytes.

    polars panics (caught as PanicException) on some corrupt Avro, and Rust prints each panic to fd 2;
    those are expected and would only bury the daemon's log, which writes to its own duplicate of fd 2
    (``orbitwatch.cli_common.setup_logging``).
    """
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _describe(exc: BaseException) -> str:
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text[:200]}"


def _with_metadata(frames: pl.DataFrame, batch: RawBatch) -> pl.DataFrame:
    rows = frames["_row"]
    schema_ids = [int.from_bytes(v[1:5], "big") if v else 0 for v in batch.values]  # unsigned 32-bit
    meta = pl.DataFrame(
        {
            "schema_id": schema_ids,
            "kafka_partition": batch.partitions,
            "kafka_offset": batch.offsets,
            "received_at": batch.timestamps_ms,
        },
        schema={
            "schema_id": pl.Int64,
            "kafka_partition": pl.Int32,
            "kafka_offset": pl.Int64,
            "received_at": pl.Int64,
        },
    )
    picked = meta[rows].with_columns(pl.from_epoch(pl.col("received_at"), "ms").dt.replace_time_zone("UTC"))
    picked = picked.with_columns(pl.col("received_at").dt.cast_time_unit("us"))
    return pl.concat([frames.drop("_row"), picked], how="horizontal")


def _dead_letters(batch: RawBatch, dead: list[tuple[int, str]]) -> list[DeadLetter]:
    return [
        DeadLetter(
            topic=batch.topic,
            partition=batch.partitions[i],
            offset=batch.offsets[i],
            timestamp_ms=batch.timestamps_ms[i],
            key=batch.keys[i],
            value=batch.values[i],
            reason=reason,
        )
        for i, reason in sorted(dead)
    ]
