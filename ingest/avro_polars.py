"""Avro schema -> polars: column types, schema resolution expressions and encoded-size expressions.

These let the codec decode a whole batch with ``polars.read_avro`` and still prove, per message, that
the columnar decode consumed exactly that message's bytes (see ``encoded_size``).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ingest.errors import UnsupportedSchema

AvroType = Any  # str | list | dict, as in the schema JSON


_PRIMITIVES: dict[str, pl.DataType] = {
    "boolean": pl.Boolean(),
    "int": pl.Int32(),
    "long": pl.Int64(),
    "float": pl.Float32(),
    "double": pl.Float64(),
    "string": pl.String(),
    "bytes": pl.Binary(),
}
_FIXED_SIZES = {"null": 0, "boolean": 1, "float": 4, "double": 8}


def _nullable_branch(node: list[Any]) -> AvroType:
    branches = [b for b in node if b != "null"]
    if len(node) != 2 or len(branches) != 1:
        raise UnsupportedSchema(f"only [null, T] unions are supported, got {node}")
    return branches[0]


def polars_dtype(node: AvroType) -> pl.DataType:
    """The polars dtype that ``polars.read_avro`` produces for an Avro type."""
    if isinstance(node, list):
        return polars_dtype(_nullable_branch(node))
    if isinstance(node, str):
        if node not in _PRIMITIVES:
            raise UnsupportedSchema(f"named type reference {node!r}")
        return _PRIMITIVES[node]
    kind = node["type"]
    if kind == "record":
        return pl.Struct({f["name"]: polars_dtype(f["type"]) for f in node["fields"]})
    if kind == "array":
        return pl.List(polars_dtype(node["items"]))
    if kind == "long" and node.get("logicalType") == "timestamp-micros":
        return pl.Datetime("us", "UTC")
    if isinstance(kind, str) and kind in _PRIMITIVES and "logicalType" not in node:
        return _PRIMITIVES[kind]
    raise UnsupportedSchema(f"type {node}")


def frame_schema(record: dict[str, Any]) -> pl.Schema:
    """The polars schema of a top-level record's columns."""
    return pl.Schema({f["name"]: polars_dtype(f["type"]) for f in record["fields"]})


def _varint_size(value: pl.Expr) -> pl.Expr:
    """Bytes of a zigzag varint for an integer expression (1 to 10).

    The zigzag of x has one bit more than x (or ~x when negative), so the size is ceil(bits / 7).
    """
    v = value.cast(pl.Int64)
    magnitude = pl.when(v >= 0).then(v).otherwise(-(v + 1))
    bits = 65 - magnitude.bitwise_leading_zeros().cast(pl.Int64)
    return (bits + 6) // 7


def encoded_size(node: AvroType, value: pl.Expr) -> pl.Expr:
    """Bytes that the Avro binary encoding of ``value`` (typed by ``node``) occupies."""
    if isinstance(node, list):
        branch = _nullable_branch(node)
        inner = pl.when(value.is_null()).then(0).otherwise(encoded_size(branch, value))
        return 1 + inner
    if isinstance(node, dict) and node["type"] == "record":
        sizes = [encoded_size(f["type"], value.struct.field(f["name"])) for f in node["fields"]]
        return pl.sum_horizontal(sizes)
    if isinstance(node, dict) and node["type"] == "array":
        items = value.list.eval(encoded_size(node["items"], pl.element())).list.sum().cast(pl.Int64)
        count = value.list.len()
        return pl.when(count == 0).then(1).otherwise(_varint_size(count) + items + 1)
    kind = node["type"] if isinstance(node, dict) else node
    if isinstance(node, dict) and node.get("logicalType") == "timestamp-micros":
        return _varint_size(value.dt.epoch("us"))
    if kind in _FIXED_SIZES:
        return pl.lit(_FIXED_SIZES[kind], pl.Int64)
    if kind in ("int", "long"):
        return _varint_size(value)
    if kind in ("string", "bytes"):
        length = value.str.len_bytes() if kind == "string" else value.bin.size()
        return _varint_size(length) + length
    raise UnsupportedSchema(f"cannot size type {node}")


def record_size(record: dict[str, Any]) -> pl.Expr:
    """Per-row encoded size of a top-level record whose fields are columns."""
    return pl.sum_horizontal([encoded_size(f["type"], pl.col(f["name"])) for f in record["fields"]])


def _strip(node: AvroType) -> AvroType:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in ("doc", "default", "aliases")}
    if isinstance(node, list):
        return [_strip(x) for x in node]
    return node


def _resolve(writer: AvroType, reader: AvroType, value: pl.Expr) -> pl.Expr:
    """An expression turning a value written with ``writer`` into ``reader``'s shape (Avro resolution)."""
    if _strip(writer) == _strip(reader):
        return value
    if isinstance(reader, dict) and reader["type"] == "record":
        if not (isinstance(writer, dict) and writer.get("type") == "record"):
            raise UnsupportedSchema("record read from a non-record")
        return pl.struct(_resolve_fields(writer, reader, value.struct.field))
    if isinstance(reader, dict) and reader["type"] == "array":
        if not (isinstance(writer, dict) and writer.get("type") == "array"):
            raise UnsupportedSchema("array read from a non-array")
        return value.list.eval(_resolve(writer["items"], reader["items"], pl.element()))
    return value.cast(polars_dtype(reader))


def _resolve_fields(writer: dict[str, Any], reader: dict[str, Any], field: Any) -> list[pl.Expr]:
    written = {f["name"]: f for f in writer["fields"]}
    exprs = []
    for rf in reader["fields"]:
        wf = written.get(rf["name"])
        if wf is not None:
            exprs.append(_resolve(wf["type"], rf["type"], field(rf["name"])).alias(rf["name"]))
        elif "default" in rf:
            exprs.append(pl.lit(rf["default"], polars_dtype(rf["type"])).alias(rf["name"]))
        else:
            raise UnsupportedSchema(f"reader field {rf['name']!r} has no default and is not written")
    return exprs


def resolution(writer: dict[str, Any], reader: dict[str, Any]) -> list[pl.Expr]:
    """Column expressions that turn a frame decoded with ``writer`` into ``reader``'s columns."""
    return _resolve_fields(writer, reader, pl.col)


def container_schema_json(record: dict[str, Any]) -> dict[str, Any]:
    """The writer schema as embedded in a spliced container: docs and defaults removed.

    polars' Avro reader rejects some defaults (``"default": false``); a writer schema needs none.
    """
    stripped: dict[str, Any] = _strip(record)
    return stripped
