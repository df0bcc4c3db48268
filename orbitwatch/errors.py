"""Exceptions raised by the daemon and CLI wiring.

OrbitwatchError
├── DeadLetterLimitExceeded   too many dead letters: likely a bad deploy upstream; the batch is not stored
├── BrokerError               the embedded broker could not be started
└── DiscoveryFileError        the query service's ``<db>.query.json`` could not be written (names the file)
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
