"""Schema registry: schema ids to parsed Avro writer schemas, and the reader schema every frame resolves to.

Schemas come from the contract's ``registry.json`` (id -> ``.avsc`` file). Optionally a
Confluent-compatible registry URL answers ids the file does not know (``GET /schemas/ids/{id}``);
answers are cached, so each id is fetched and parsed once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import httpx

from ingest.errors import SchemaRegistryError

AvroSchema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """One registered schema: its id, the raw JSON (as written) and fastavro's parsed form."""

    schema_id: int
    raw: AvroSchema
    parsed: Any


class SchemaRegistry:
    """Resolves schema ids; the reader schema is the newest schema in the registry file."""

    def __init__(self, contract_dir: Path, url: str | None = None, timeout_s: float = 5.0) -> None:
        self._schemas: dict[int, WriterSchema] = {}
        self._unknown: set[int] = set()
        self._url = url.rstrip("/") if url else None
        self._timeout_s = timeout_s
        index_path = contract_dir / "registry.json"
        try:
            index = json.loads(index_path.read_text())
            for key, filename in index.items():
                raw = json.loads((contract_dir / filename).read_text())
                self._schemas[int(key)] = _parse(int(key), raw)
        except (OSError, ValueError, TypeError) as exc:
            raise SchemaRegistryError(f"cannot read schema registry {index_path}: {exc}") from exc
        if not self._schemas:
            raise SchemaRegistryError(f"schema registry {index_path} lists no schemas")
        self.reader = self._schemas[max(self._schemas)]

    def get(self, schema_id: int) -> WriterSchema | None:
        """The writer schema for ``schema_id``, or None when neither the file nor the URL knows it."""
        found = self._schemas.get(schema_id)
        if found is not None or self._url is None or schema_id in self._unknown:
            return found
        return self._fetch(schema_id)

    def _fetch(self, schema_id: int) -> WriterSchema | None:
        try:
            response = httpx.get(f"{self._url}/schemas/ids/{schema_id}", timeout=self._timeout_s)
        except httpx.HTTPError as exc:
            raise SchemaRegistryError(f"schema registry {self._url} unreachable: {exc}") from exc
        if response.status_code == 404:
            self._unknown.add(schema_id)
            return None
        if response.status_code != 200:
            raise SchemaRegistryError(f"schema registry {self._url} answered {response.status_code} for id {schema_id}")
        try:
            raw = json.loads(response.json()["schema"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaRegistryError(f"schema registry answer for id {schema_id} unreadable: {exc}") from exc
        schema = _parse(schema_id, raw)
        self._schemas[schema_id] = schema
        return schema


def _parse(schema_id: int, raw: AvroSchema) -> WriterSchema:
    try:
        parsed = fastavro.parse_schema(raw, _write_hint=False)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaRegistryError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from exc
    return WriterSchema(schema_id=schema_id, raw=raw, parsed=parsed)
