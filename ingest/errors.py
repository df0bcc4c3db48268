"""Exceptions raised by the ingest package.

The root derives from ``orbitwatch.errors.OrbitwatchError``, so one ``except`` catches the whole product.

IngestError
├── SchemaRegistryError    a schema id that cannot be resolved, or a registry that cannot be read
└── SourceError            the Kafka source failed (connect, poll, commit), or a topic could not be created
"""

from __future__ import annotations

from orbitwatch.errors import OrbitwatchError


class IngestError(OrbitwatchError):
    """Base class of every error raised by ``ingest``."""


class SchemaRegistryError(IngestError):
    """A schema id that cannot be resolved, or a registry that cannot be read."""


class SourceError(IngestError):
    """The Kafka source failed: could not connect, poll, seek or commit."""
