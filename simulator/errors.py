"""Exceptions raised by the simulator.

The root derives from ``orbitwatch.errors.OrbitwatchError``, so one ``except`` catches the whole product.

SimulatorError
└── ProduceError    Kafka rejected at least one message (also a RuntimeError)
"""

from __future__ import annotations

from orbitwatch.errors import OrbitwatchError


class SimulatorError(OrbitwatchError):
    """Base class of errors raised by ``simulator``."""


class ProduceError(SimulatorError, RuntimeError):
    """Kafka rejected at least one message."""
