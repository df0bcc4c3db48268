"""The history's offsets as the Kafka source sees them (``ingest.source.OffsetStore``) for one topic."""

from __future__ import annotations

from orbitwatch.inflight import InFlightWrite
from storage.writer import HistoryWriter


class HistoryOffsets:
    """``kafka_offsets``, ``partition_handovers`` and ``partition_claims`` of one topic, and the write in
    flight to finish before partitions are revoked (called from kafka-python's IO thread while the main
    thread polls)."""

    def __init__(self, writer: HistoryWriter, topic: str, in_flight: InFlightWrite) -> None:
        self._writer, self._topic, self._in_flight = writer, topic, in_flight
        self.unsaved_claims = False
        """Claims recorded since the daemon's last CHECKPOINT (it checkpoints after the next batch, so a
        lost WAL cannot take them)."""

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

    def claims(self) -> dict[int, int | None]:
        """Partitions this history was assigned, at the offset it began reading each (None: reset)."""
        return self._writer.claims(self._topic)

    def record_claims(self, first_offsets: dict[int, int | None]) -> None:
        """Remember partitions newly assigned and where this history begins reading them."""
        if first_offsets:
            self._writer.record_claims(self._topic, first_offsets)
            self.unsaved_claims = True

    def forget_claims(self, partitions: list[int]) -> None:
        """Partitions handed over before this history stored anything of them."""
        if partitions:
            self._writer.forget_claims(self._topic, partitions)

    def before_revoke(self) -> dict[int, int]:
        """Finish the write in flight; the next offsets it stored."""
        return self._in_flight.wait()
