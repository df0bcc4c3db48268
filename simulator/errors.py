"""Exceptions raised by the simulator.

SimulatorError
└── ProduceError    Kafka rejected at least one message
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base class of errors raised by ``simulator``."""


class ProduceError(SimulatorError, RuntimeError):
    """Kafka rejected at least one message."""
