"""Send simulated messages to Kafka, as fast as possible or paced to simulated time."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from simulator.errors import ProduceError
from simulator.messages import SimMessage

DEFAULT_PRODUCER_CONFIG: Mapping[str, object] = {
    "acks": 1,
    "enable_idempotence": False,  # acks=1 is enough for simulated traffic; saying so keeps kafka-python quiet
    "linger_ms": 20,
    "batch_size": 1 << 20,
    "max_request_size": 16 << 20,
}
PROGRESS_EVERY = 1000


def _make_producer(bootstrap_servers: str, config: Mapping[str, Any]) -> Any:
    """A kafka-python KafkaProducer; kafka is imported here, quieting its import-time deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap_servers, **config)


def _pace(message: SimMessage, first_ms: int, started: float, speed: float) -> None:
    due = started + (message.timestamp_ms - first_ms) / 1000 / speed
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def produce(
    messages: Iterable[SimMessage],
    bootstrap_servers: str,
    topic: str,
    *,
    producer_config: Mapping[str, object] | None = None,
    progress: Callable[[int], None] | None = None,
    speed: float | None = None,
    realtime_start: float | None = None,
) -> int:
    """Send ``messages`` to ``topic`` keyed by rack, flush, and return how many were sent.

    With ``speed`` set, a message is sent no earlier than its offset from the first message's
    timestamp divided by ``speed``, counted from ``realtime_start`` (a ``time.monotonic()`` value,
    default: now). ``producer_config`` overrides the KafkaProducer defaults.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive")
    config: dict[str, Any] = {**DEFAULT_PRODUCER_CONFIG, **(producer_config or {})}
    producer = _make_producer(bootstrap_servers, config)
    failures: list[BaseException] = []
    started = time.monotonic() if realtime_start is None else realtime_start
    first_ms: int | None = None
    count = 0
    try:
        for message in messages:
            if speed is not None:
                first_ms = message.timestamp_ms if first_ms is None else first_ms
                _pace(message, first_ms, started, speed)
            future = producer.send(topic, key=message.key, value=message.value, timestamp_ms=message.timestamp_ms)
            future.add_errback(failures.append)
            count += 1
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(count)
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise ProduceError(f"{len(failures)} of {count} messages failed; first: {failures[0]!r}") from (
            failures[0] if isinstance(failures[0], Exception) else None
        )
    if progress is not None:
        progress(count)
    return count
