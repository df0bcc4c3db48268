"""Exceptions raised by the processing package.

ProcessingError
└── FrameShapeError    a frame table lacks the columns the processing functions need
"""

from __future__ import annotations


class ProcessingError(Exception):
    """Base class of every error raised by ``processing``."""


class FrameShapeError(ProcessingError):
    """A frame table lacks columns (or has wrong types) that the processing functions need."""
