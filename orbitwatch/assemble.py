"""Assemble what the writer stores from one batch: rows, dead letters (undecodable and rejected), offsets."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import polars as pl

from ingest.codec import DecodedBatch, RawBatch
from processing.rows import PreparedBatch
from storage.writer import BatchToStore, PartitionProgress


def to_store(
    raw: RawBatch, decoded: DecodedBatch, prepared: PreparedBatch, archived_before: datetime | None = None
) -> BatchToStore:
    """Assemble what the writer stores: rows, dead letters (undecodable and rejected), offsets.

    ``archived_before``: frames sampled before it belong to days archived or due (see ``BatchToStore``).
    """
    position = {(p, o): i for i, (p, o) in enumerate(zip(raw.partitions, raw.offsets, strict=True))}
    letters = [(d.partition, d.offset, d.reason) for d in decoded.dead_letters]
    letters += list(prepared.rejected.iter_rows())
    rows = [position[(p, o)] for p, o, _ in letters]
    dead = pl.DataFrame(
        {
            "topic": [raw.topic] * len(letters),
            "kafka_partition": [p for p, _, _ in letters],
            "kafka_offset": [o for _, o, _ in letters],
            "kafka_timestamp": [raw.timestamps_ms[i] for i in rows],
            "message_key": [raw.keys[i] for i in rows],
            "raw_value": [raw.values[i] for i in rows],
            "reason": [r for _, _, r in letters],
        },
        schema={
            "topic": pl.String,
            "kafka_partition": pl.Int32,
            "kafka_offset": pl.Int64,
            "kafka_timestamp": pl.Int64,
            "message_key": pl.Binary,
            "raw_value": pl.Binary,
            "reason": pl.String,
        },
    ).with_columns(pl.from_epoch("kafka_timestamp", "ms").dt.replace_time_zone("UTC"))
    ends = raw.next_offsets()
    progress = {
        p: PartitionProgress(ends[p], n, prepared.duplicates_by_partition.get(p, 0))
        for p, n in Counter(raw.partitions).items()
    }
    return BatchToStore(raw.topic, prepared.rack_rows, prepared.gpu_rows, dead, progress, archived_before)


def dead_reasons(raw: RawBatch, dead: pl.DataFrame) -> list[str | None]:
    """Per message, in stream order: why it was dead-lettered, or None."""
    why = {
        (p, o): r
        for p, o, r in zip(
            dead["kafka_partition"].to_list(), dead["kafka_offset"].to_list(), dead["reason"].to_list(), strict=True
        )
    }
    return [why.get((p, o)) for p, o in zip(raw.partitions, raw.offsets, strict=True)]
