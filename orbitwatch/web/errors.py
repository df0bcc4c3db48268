"""The web view's errors::

OrbitwatchError (orbitwatch.errors)
└── WebError
    ├── SourceError: a shard's query service or file failed (``source``, ``kind``, message)
    │   └── ReadOnlyError: an action on a history opened read-only
    └── TooManyPages: every live page slot is taken (``web.max_live_clients``)
"""

from __future__ import annotations

from orbitwatch.errors import OrbitwatchError


class WebError(OrbitwatchError):
    """Anything the web view raises."""


class SourceError(WebError):
    """A shard could not answer: ``source`` names it, ``kind`` is the query service's error kind."""

    def __init__(self, source: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.source = source
        self.kind = kind


class ReadOnlyError(SourceError):
    """An alert command sent to a history opened read-only."""


class TooManyPages(WebError):
    """Every live page slot is taken (``web.max_live_clients``)."""
