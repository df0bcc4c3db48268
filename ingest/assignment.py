"""What every source does with partitions: which ones a static consumer owns, and, when partitions are
assigned, where each resumes (``ingest.resume``) and what the history records of it.

``ingest.source.KafkaSource`` and ``ingest.local_source.LocalSource`` share these, so the two cannot drift
apart; each only turns the decisions into its own positions (a seek, an offset held in memory).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from ingest.errors import SourceError
from ingest.resume import Claim, Resume, resume_position
from ingest.settings import KafkaSettings
from ingest.source_protocol import OffsetStore

log = logging.getLogger(__name__)


def static_partitions(settings: KafkaSettings, existing: Callable[[], Iterable[int] | None]) -> list[int] | None:
    """The fixed partitions of a consumer, or None for consumer-group assignment.

    ``kafka.static_partitions`` as given, else the partitions a shard owns (``kafka.shard_index`` of
    ``shard_count``) among the topic's ``existing()`` ones; ``SourceError`` when the topic does not exist or
    the shard owns none of it.
    """
    if settings.static_partitions is not None:
        return settings.static_partitions
    if settings.shard_index is None or settings.shard_count is None:
        return None
    partitions = sorted(existing() or ())
    if not partitions:
        raise SourceError(f"topic {settings.topic} does not exist on {settings.bootstrap_servers}")
    owned = [p for p in partitions if settings.owns(p)]
    if not owned:
        raise SourceError(
            f"shard {settings.shard_index} of {settings.shard_count} owns none of {settings.topic}'s "
            f"{len(partitions)} partitions; use at most {len(partitions)} shards"
        )
    log.info("shard %d of %d owns partitions %s", settings.shard_index, settings.shard_count, owned)
    return owned


def resume_assigned(
    store: OffsetStore, committed: Mapping[int, int | None], *, grouped: bool
) -> tuple[list[Resume], dict[int, int]]:
    """Where each assigned partition resumes, and the history told of it: a claim for each partition it
    neither stored nor claimed, its handovers forgotten (the partitions are its own again).

    ``committed`` maps every assigned partition to the group's committed next offset (None: none). Returns
    the decisions, in ``committed``'s order, and the history's stored offsets they were made from.
    """
    stored, handed_over, claims = store.stored(), store.handovers(), store.claims()
    decided: list[Resume] = []
    new_claims: dict[int, int | None] = {}
    for p, group_offset in committed.items():
        resume = resume_position(
            p,
            stored.get(p),
            group_offset,
            handed_over=handed_over.get(p),
            grouped=grouped,
            claim=Claim(claims[p]) if p in claims else None,
        )
        decided.append(resume)
        if p not in stored and p not in claims:
            new_claims[p] = resume.offset
    store.forget_handovers(list(committed))
    store.record_claims(new_claims)
    return decided, stored


def start_offset(resume: Resume, group_offset: int | None, auto_offset_reset: str) -> int | None:
    """The offset to read from: the resume's, or for a re-read under ``latest`` the group's (the end would
    skip what nobody stored); None: the ``auto_offset_reset`` position."""
    if resume.offset is not None:
        return resume.offset
    if resume.source == "reread" and auto_offset_reset == "latest":
        return group_offset
    return None


def warn_rereads(decided: list[Resume], auto_offset_reset: str) -> None:
    """Log, once per assignment, the partitions this history reads again (it lost what it had stored)."""
    reread = [r for r in decided if r.source == "reread"]
    if not reread:
        return
    log.warning(
        "Kafka's committed offset is ahead of this history for partitions %s: reading %s again "
        "(this history lost messages it had stored: a restored backup or a lost WAL?); "
        "frames already stored are dropped as duplicates",
        [r.partition for r in reread],
        ", ".join(
            f"partition {r.partition}: {r.reread} messages from offset {r.offset}"
            if r.offset is not None
            else f"partition {r.partition}: from the {auto_offset_reset} offset"
            for r in reread
        ),
    )
