"""What the daemon committed, per partition, as an in-memory snapshot for ``GET /v1/status``."""

from __future__ import annotations

from datetime import UTC, datetime


class Progress:
    """In-memory snapshot of what the daemon committed, for ``/v1/status`` (read from other threads)."""

    def __init__(self, stored: dict[int, int]) -> None:
        self.next_offsets = dict(stored)
        self.lag: dict[int, int] = {}
        self.assigned: list[int] = []
        self.last_commit: datetime | None = None
        self.messages = 0

    def committed(self, next_offsets: dict[int, int], messages: int) -> None:
        """A batch committed (DuckDB, then Kafka) up to ``next_offsets``."""
        self.next_offsets = {**self.next_offsets, **next_offsets}
        self.last_commit = datetime.now(UTC)
        self.messages += messages

    def partitions(self) -> list[dict[str, int | bool | None]]:
        """Per partition known to this history or assigned now: next offset, lag, assigned."""
        numbers = sorted(set(self.next_offsets) | set(self.assigned))
        return [
            {
                "partition": p,
                "next_offset": self.next_offsets.get(p),
                "lag": self.lag.get(p),
                "assigned": p in self.assigned,
            }
            for p in numbers
        ]
