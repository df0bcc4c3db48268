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
- **No DuckDB offset, but a claim**: ``partition_claims`` records each partition this history was assigned
  and the offset it began reading it at (the group's committed offset, or None for ``auto_offset_reset``).
  A claimed partition without stored offsets lost every batch it stored (a backup taken before its first
  batch, a WAL cut before it): it is treated as stored up to the claim's offset, so Kafka ahead of the claim
  means a re-read from the claim (from ``auto_offset_reset`` for a claim without an offset). A partition
  handed over before anything of it was stored loses its claim instead of recording a handover.
- **No DuckDB offset and no claim**: in a consumer group, a partition this history never owned (a new
  member, or one another member owned) resumes at the group's committed offset, or at ``auto_offset_reset``
  without one; with static partitions (no other member can have stored them) it reads from
  ``auto_offset_reset``.

Decision, for consumer groups of several members: a daemon that stops (SIGTERM, crash) does not record a
handover, so that a restore of its cold backup re-reads what it lost. Its partitions, if another member
stored them meanwhile, come back to it and are re-read from its own offsets: those frames are then in both
histories. Static shards (``kafka.shard_index``/``shard_count``, recommended for scale-out) never overlap.
With ``auto_offset_reset = "latest"``, a re-read without an offset (a claim without one, a static shard
without stored offsets) starts at the group's committed offset: the end would skip what nobody stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ResumeFrom = Literal["stored", "committed", "reset", "reread"]


@dataclass(frozen=True, slots=True)
class Claim:
    """This history was assigned the partition and began reading it at ``first_offset`` (None: reset)."""

    first_offset: int | None


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
    claim: Claim | None = None,
) -> Resume:
    """Where ``partition`` resumes, given DuckDB's ``stored`` next offset, Kafka's ``committed`` one, the
    offset at which this history ``handed_over`` the partition in a rebalance, and its ``claim`` on the
    partition (see the module doc)."""
    if stored is None and claim is not None:
        if claim.first_offset is None:
            return Resume(partition, None, "reset" if committed is None else "reread")
        stored = claim.first_offset
    if committed is None or (stored is not None and stored >= committed):
        return Resume(partition, stored, "stored" if stored is not None else "reset")
    if stored is None:
        if grouped:
            return Resume(partition, committed, "committed")
        return Resume(partition, None, "reread")  # static: nobody else reads it; this history lost it all
    if handed_over is not None and handed_over == stored:
        return Resume(partition, committed, "committed")
    return Resume(partition, stored, "reread", committed - stored)
