"""The product's one exceptions root, and the errors the daemon and CLI wiring raise.

``except OrbitwatchError`` catches everything orbitwatch raises: every package's root derives from it, and
each package draws its own tree in its ``errors.py``. This module imports nothing of the product, so every
package may import it (the one upward import the layering allows, see ``[tool.importlinter]``).

OrbitwatchError
├── ConfigError               settings that cannot be used, named by field (any section, found at start-up)
├── IngestError               ingest/errors.py: registry, Kafka source and sink
├── ProcessingError           processing/errors.py: frame shapes
├── StorageError              storage/errors.py: schema version, lock, queries, archive
├── AlertingError             alerting/errors.py: rules, rule inputs, delivery, operator commands
├── SimulatorError            simulator/errors.py: producing the simulated fleet
├── DeadLetterLimitExceeded   too many dead letters: likely a bad deploy upstream; the batch is not stored
├── BrokerError               the embedded broker could not be started
├── DiscoveryFileError        the query service's ``<db>.query.json`` could not be written (names the file)
├── ServiceError              a request the query service answers with an error (its kind and message)
├── QueryServiceError         a query service refused or failed a client's query, or cannot be reached
└── WebError                  orbitwatch/web/errors.py: the web view (a shard that cannot answer, live slots)
"""

from __future__ import annotations


class OrbitwatchError(Exception):
    """Base class of every error orbitwatch raises (each package's root derives from it)."""


class ConfigError(OrbitwatchError):
    """Settings that cannot be used; the message names the offending field (e.g. ``query.port``)."""


class DeadLetterLimitExceeded(OrbitwatchError):
    """The dead-letter ratio or run length passed its limit; the offending batch was not stored."""


class BrokerError(OrbitwatchError):
    """The embedded Kafka-protocol broker could not be started or reached."""


class DiscoveryFileError(OrbitwatchError):
    """The query service's discovery file could not be written; the message names the file and the cause."""


class ServiceError(OrbitwatchError):
    """A request the query service answers with an error: ``kind`` (mapped to an HTTP status by
    ``orbitwatch.query_http.STATUS_OF_KIND``) and a message."""

    def __init__(self, kind: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.headers = headers


class QueryServiceError(OrbitwatchError):
    """The service refused or failed a query: ``kind`` (read_only, file_access, timeout, too_large, busy,
    query, bad_request, unauthorized, not_found, internal, unreachable) and the service's message."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
