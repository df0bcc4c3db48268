"""Where a partition resumes on assignment: the offsets DuckDB holds are the truth of this history.

DuckDB stores each batch's next offsets in the same transaction as its rows, so ``kafka_offsets`` says
exactly what this history holds. Kafka's committed offset is written after DuckDB's commit and only says
how far the *group* got. The two disagree in four ways, decided here per partition:

- **DuckDB at or ahead of Kafka** (a Kafka commit failed or was cut off by a crash): resume at DuckDB's.
- **Kafka ahead, and this history handed the partition over at exactly its stored offset** (a rebalance
  moved it to another member of the group while this daemon ran, recorded in ``partition_handovers``):
  another member stored those messages in its own history, so resume at Kafka's offset.
- **Kafka ahead otherwise**: this history lost messages it once stored (a restored backup, a WAL whose
  tail was lost): resume at DuckDB's offset and re-read them; duplicates are dropped by the frame key.
  Logged as a warning naming the partitions and the message counts.
- **No DuckDB offset**: in a consumer group, a partition this history never stored (a new member, or one
  another member owned) resumes at the group's committed offset, or at ``auto_offset_reset`` without one;
  with static partitions (no other member can have stored them) it reads from ``auto_offset_reset``.

Decision, for consumer groups of several members: a daemon that stops (SIGTERM, crash) does not record a
handover, so that a restore of its cold backup re-reads what it lost. Its partitions, if another member
stored them meanwhile, come back to it and are re-read from its own offsets: those frames are then in both
histories. Static shards (``kafka.shard_index``/``shard_count``, recommended for scale-out) never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ResumeFrom = Literal["stored", "committed", "reset", "reread"]


@dataclass(frozen=True, slots=True)
class Resume:
    """Where one partition resumes: ``offset`` (None: ``auto_offset_reset``) and why."""

    partition: int
    offset: int | None
    source: ResumeFrom
    reread: int = 0
    """Messages this history lost and reads again (``source == "reread"``), when the count is known."""


def resume_position(
    partition: int,
    stored: int | None,
    committed: int | None,
    *,
    handed_over: int | None = None,
    grouped: bool = True,
) -> Resume:
    """Where ``partition`` resumes, given DuckDB's ``stored`` next offset, Kafka's ``committed`` one, and
    the offset at which this history ``handed_over`` the partition in a rebalance (see the module doc)."""
    if committed is None or (stored is not None and stored >= committed):
        return Resume(partition, stored, "stored" if stored is not None else "reset")
    if stored is None:
        if grouped:
            return Resume(partition, committed, "committed")
        return Resume(partition, None, "reread")  # static: nobody else reads it; this history lost it all
    if handed_over is not None and handed_over == stored:
        return Resume(partition, committed, "committed")
    return Resume(partition, stored, "reread", committed - stored)
