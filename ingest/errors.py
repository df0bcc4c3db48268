"""Exceptions raised by the ingest package.

IngestError
├── ConfigError            settings that cannot be used (names the field)
├── SchemaRegistryError    a schema id that cannot be resolved, or a registry that cannot be read
└── SourceError            the Kafka source failed (connect, poll, commit), or a topic could not be created
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every error raised by ``ingest``."""


class ConfigError(IngestError):
    """Settings that cannot be used; the message names the offending field."""


class SchemaRegistryError(IngestError):
    """A schema id that cannot be resolved, or a registry that cannot be read."""


class SourceError(IngestError):
    """The Kafka source failed: could not connect, poll, seek or commit."""
