"""Exceptions raised by the daemon and CLI wiring.

OrbitwatchError
├── DeadLetterLimitExceeded   too many dead letters: likely a bad deploy upstream; the batch is not stored
├── BrokerError               the embedded broker could not be started
├── DiscoveryFileError        the query service's ``<db>.query.json`` could not be written (names the file)
├── ServiceError              a request the query service answers with an error (its kind and message)
└── QueryServiceError         a query service refused or failed a client's query, or cannot be reached
"""

from __future__ import annotations


class OrbitwatchError(Exception):
    """Base class of errors raised by the wiring."""


class DeadLetterLimitExceeded(OrbitwatchError):
    """The dead-letter ratio or run length passed its limit; the offending batch was not stored."""


class BrokerError(OrbitwatchError):
    """The embedded Kafka-protocol broker could not be started or reached."""


class DiscoveryFileError(OrbitwatchError):
    """The query service's discovery file could not be written; the message names the file and the cause."""


class ServiceError(OrbitwatchError):
    """A request the query service answers with an error: ``kind`` (mapped to an HTTP status by
    ``orbitwatch.query_service._STATUS``) and a message."""

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
