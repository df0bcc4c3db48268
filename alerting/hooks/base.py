"""What every hook kind shares: the ``Hook`` protocol, the common settings, closing, the retry delay."""

from __future__ import annotations

import random
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from alerting.payload import Notification

MAX_DETAIL = 300
"""Longest piece of a receiver's answer (a response body, a stderr line) quoted in a DeliveryError."""


class Hook(Protocol):
    """Delivers one notification; raises DeliveryError (with a clear message) when it could not."""

    @property
    def name(self) -> str:
        """The hook's declared name (``DeliveryError.hook``)."""
        ...

    def deliver(self, body: bytes, notification: Notification) -> None:
        """Send ``body`` (``payload.encode`` of the notification's Alertmanager body) once."""
        ...


class HookSettings(BaseModel):
    """Fields every hook kind accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The retry policy of the hook's notifications: read by the outbox worker (``backoff_s(attempt,
    # base_s=backoff_s)``), accepted here so a rules file's hook settings validate as one block.
    max_attempts: int | None = Field(None, ge=1, description="give up after this many attempts (outbox)")
    backoff_s: float | None = Field(None, gt=0, description="first retry delay, doubling (outbox)")


def close_hook(hook: Hook) -> None:
    """Release what ``hook`` holds (HTTP connections, a Kafka producer), if it holds anything."""
    close = getattr(hook, "close", None)
    if callable(close):
        close()


def backoff_s(attempt: int, base_s: float = 1.0, cap_s: float = 300.0, jitter: float = 0.0) -> float:
    """Seconds to wait before the next delivery attempt after ``attempt`` failed ones (0: none yet, no wait).

    ``base_s * 2 ** (attempt - 1)``, at most ``cap_s``. ``jitter`` in [0, 1] takes a random fraction of up
    to ``jitter`` off (1: "full jitter", uniform in [0, delay]) so that many notifications failing together
    do not retry together; with ``jitter=0`` the result is deterministic and non-decreasing in ``attempt``.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base_s <= 0 or cap_s < 0:
        raise ValueError(f"base_s must be positive and cap_s non-negative, got {base_s} and {cap_s}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be within [0, 1], got {jitter}")
    if attempt == 0:
        return 0.0
    delay = min(cap_s, base_s * 2.0 ** min(attempt - 1, 64))  # the exponent's bound keeps the float finite
    if jitter:
        delay *= 1.0 - jitter * random.random()  # spreads retries; not cryptographic
    return delay


def shorten(text: str) -> str:
    """``text`` on one line, cut to ``MAX_DETAIL`` characters (with ``...`` when cut)."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
