"""Exceptions raised by the ingest package.

The root derives from ``orbitwatch.errors.OrbitwatchError``, so one ``except`` catches the whole product.

IngestError
├── SchemaRegistryError    a schema id that cannot be resolved, or a registry that cannot be read
├── SourceError            a source or sink failed (connect, poll, seek, commit, send), or a topic could not
│                          be created
└── UnsupportedSchema      a schema construct the columnar fast path does not handle (the codec falls back
                           to fastavro per message; at start-up, a reader schema it cannot read)

Settings that cannot be used (e.g. a Kafka sink's producer settings) raise the product-wide
``orbitwatch.errors.ConfigError``, outside this tree.
"""

from __future__ import annotations

from orbitwatch.errors import OrbitwatchError


class IngestError(OrbitwatchError):
    """Base class of every error raised by ``ingest``."""


class SchemaRegistryError(IngestError):
    """A schema id that cannot be resolved, or a registry that cannot be read."""


class SourceError(IngestError):
    """A source or sink failed: could not connect, poll, seek, commit or send."""


class UnsupportedSchema(IngestError):
    """A schema construct the columnar fast path does not handle; callers fall back to fastavro."""
