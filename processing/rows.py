"""From decoded frames (one row per Kafka message) to stored rows: rack rows and per-GPU rows.

``prepare_batch`` is the whole processing step of the backbone: reject impossible frames, drop
duplicate copies inside the batch (first arrival wins), flag impossible readings, explode to per-GPU rows.
Duplicates of frames stored by earlier batches are dropped by the store, which owns the history.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from processing import quality
from processing.errors import FrameShapeError

FRAME_KEY = ["rack_id", "boot_epoch", "frame_seq"]
_RACK_STRUCTS = ("power", "thermal", "radiation")
_REQUIRED = {
    *FRAME_KEY,
    "sampled_at",
    "received_at",
    "kafka_partition",
    "kafka_offset",
    "gpus",
    *_RACK_STRUCTS,
}


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """Rows ready to store, and the frames that were rejected with their reasons."""

    rack_rows: pl.DataFrame
    gpu_rows: pl.DataFrame
    rejected: pl.DataFrame  # kafka_partition, kafka_offset, reason
    duplicates_by_partition: dict[int, int]


def prepare_batch(frames: pl.DataFrame) -> PreparedBatch:
    """Validate, deduplicate within the batch, and split decoded frames into rack and GPU rows.

    Only impossible frames are rejected; how old a frame is never matters here (a frame of a day already
    archived is stored too: see ``storage.writer``).
    """
    missing = _REQUIRED - set(frames.columns)
    if missing:
        raise FrameShapeError(f"decoded frames lack columns {sorted(missing)}")
    judged = frames.with_columns(quality.rejection_reason().alias("reason"))
    rejected = judged.filter(pl.col("reason").is_not_null()).select("kafka_partition", "kafka_offset", "reason")
    valid = judged.filter(pl.col("reason").is_null()).drop("reason")
    unique = valid.sort("kafka_partition", "kafka_offset").unique(FRAME_KEY, keep="first", maintain_order=True)
    rack_rows = quality.flag_invalid(unique.drop("gpus").unnest(*_RACK_STRUCTS), quality.RACK_READING_LIMITS)
    gpu_rows = quality.flag_invalid(explode_gpus(unique), quality.GPU_READING_LIMITS)
    return PreparedBatch(
        rack_rows=rack_rows,
        gpu_rows=gpu_rows,
        rejected=rejected,
        duplicates_by_partition=_duplicates_by_partition(valid, unique),
    )


def explode_gpus(frames: pl.DataFrame) -> pl.DataFrame:
    """One row per GPU sample, carrying its frame's identity and sample time."""
    return (
        frames.select(*FRAME_KEY, "sampled_at", "gpus")
        .explode("gpus")
        .filter(pl.col("gpus").is_not_null())
        .unnest("gpus")
    )


def _duplicates_by_partition(valid: pl.DataFrame, unique: pl.DataFrame) -> dict[int, int]:
    before: dict[int, int] = dict(valid.group_by("kafka_partition").len().iter_rows())
    after: dict[int, int] = dict(unique.group_by("kafka_partition").len().iter_rows())
    return {p: n - after.get(p, 0) for p, n in before.items() if n > after.get(p, 0)}
