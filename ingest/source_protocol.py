"""What the daemon needs of a telemetry source, and what a source needs of the history (no Kafka here).

``ingest.source.KafkaSource`` implements ``Source`` on a real broker; ``ingest.local_source.LocalSource``
implements it in process, for tests that run the daemon's batch loop without a broker. Both are built by a
``SourceFactory`` from the ``[kafka]`` settings, the history's offsets (``OffsetStore``) and the
``BrokerState`` that turns their calls' outcomes into outage events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeAlias

from ingest.broker_state import BrokerState
from ingest.codec import RawBatch
from ingest.settings import KafkaSettings


class OffsetStore(Protocol):
    """What the history holds of this topic's offsets (``storage.writer.HistoryWriter`` for one topic)."""

    def stored(self) -> dict[int, int]:
        """Next offset per partition, as committed with the data."""
        ...

    def handovers(self) -> dict[int, int]:
        """Partitions handed over to another group member in a rebalance, at these next offsets."""
        ...

    def record_handovers(self, offsets: dict[int, int]) -> None:
        """Remember partitions handed over at ``offsets``."""
        ...

    def forget_handovers(self, partitions: list[int]) -> None:
        """The partitions are this history's again."""
        ...

    def claims(self) -> dict[int, int | None]:
        """Partitions this history was assigned, at the offset it began reading each (None: reset)."""
        ...

    def record_claims(self, first_offsets: dict[int, int | None]) -> None:
        """Remember partitions newly assigned and where this history begins reading them."""
        ...

    def forget_claims(self, partitions: list[int]) -> None:
        """Partitions handed over before this history stored anything of them."""
        ...

    def before_revoke(self) -> dict[int, int]:
        """Finish the batch in flight; the next offsets it stored (to commit before letting go)."""
        ...


class NoHistory:
    """An ``OffsetStore`` that holds nothing: a consumer without a history (benchmarks, tools) resumes at
    the group's committed offsets, or ``auto_offset_reset``."""

    def stored(self) -> dict[int, int]:
        """No stored offsets."""
        return {}

    def handovers(self) -> dict[int, int]:
        """No handovers."""
        return {}

    def record_handovers(self, offsets: dict[int, int]) -> None:
        """Nothing to remember."""

    def forget_handovers(self, partitions: list[int]) -> None:
        """Nothing to forget."""

    def claims(self) -> dict[int, int | None]:
        """No claims."""
        return {}

    def record_claims(self, first_offsets: dict[int, int | None]) -> None:
        """Nothing to remember."""

    def forget_claims(self, partitions: list[int]) -> None:
        """Nothing to forget."""

    def before_revoke(self) -> dict[int, int]:
        """No write in flight."""
        return {}


class Source(Protocol):
    """One consumer on the telemetry topic, as the daemon's batch loop uses it (auto-commit off).

    On every assignment each partition resumes where ``ingest.resume`` decides from the ``OffsetStore``
    and the group's committed offsets; ``commit`` is called only once DuckDB committed what it names.
    """

    def poll(self, timeout_ms: int, max_records: int, top_up_ms: int | None = 50) -> RawBatch:
        """Up to ``max_records`` messages, in offset order within each partition; empty after ``timeout_ms``
        without any."""
        ...

    def commit(self, next_offsets: dict[int, int]) -> None:
        """Commit the next offsets a stored batch reached, for partitions still owned (a failed commit is
        carried to the next call, or to ``retry_commit``)."""
        ...

    def retry_commit(self) -> None:
        """Commit offsets an earlier commit could not (nothing when there are none)."""
        ...

    def assigned_partitions(self) -> list[int]:
        """Partitions this consumer currently reads."""
        ...

    def lag(self) -> dict[int, int]:
        """Messages behind the end offset per assigned partition, where the broker reports it."""
        ...

    def close(self) -> None:
        """Leave the group (committing the offsets carried and those of the write in flight) and close."""
        ...


SourceFactory: TypeAlias = Callable[[KafkaSettings, OffsetStore, BrokerState], Source]
"""Builds the daemon's source (``KafkaSource`` by default; ``LocalBroker.consumer`` in process)."""
