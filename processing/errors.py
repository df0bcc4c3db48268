"""Exceptions raised by the processing package.

The root derives from ``orbitwatch.errors.OrbitwatchError``, so one ``except`` catches the whole product.

ProcessingError
└── FrameShapeError    a frame table lacks the columns the processing functions need
"""

from __future__ import annotations

from orbitwatch.errors import OrbitwatchError


class ProcessingError(OrbitwatchError):
    """Base class of every error raised by ``processing``."""


class FrameShapeError(ProcessingError):
    """A frame table lacks columns (or has wrong types) that the processing functions need."""
