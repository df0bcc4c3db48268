"""The history's offsets as the Kafka source sees them (``ingest.source.OffsetStore``) for one topic."""

from __future__ import annotations

from orbitwatch.inflight import InFlightWrite
from storage.writer import HistoryWriter


class HistoryOffsets:
    """``kafka_offsets`` and ``partition_handovers`` of one topic, and the write in flight to finish
    before partitions are revoked (called from kafka-python's IO thread while the main thread polls)."""

    def __init__(self, writer: HistoryWriter, topic: str, in_flight: InFlightWrite) -> None:
        self._writer, self._topic, self._in_flight = writer, topic, in_flight

    def stored(self) -> dict[int, int]:
        """Next offset per partition, as committed with the data."""
        return self._writer.stored_offsets(self._topic)

    def handovers(self) -> dict[int, int]:
        """Partitions handed over to another group member, at these next offsets."""
        return self._writer.handovers(self._topic)

    def record_handovers(self, offsets: dict[int, int]) -> None:
        """Remember partitions handed over in a rebalance."""
        if offsets:
            self._writer.record_handovers(self._topic, offsets)

    def forget_handovers(self, partitions: list[int]) -> None:
        """The partitions are this history's again."""
        if partitions:
            self._writer.forget_handovers(self._topic, partitions)

    def before_revoke(self) -> dict[int, int]:
        """Finish the write in flight; the next offsets it stored."""
        return self._in_flight.wait()
