"""The end of every fault scenario: what the daemon kept must match the simulator's ground truth.

``send`` produces a simulated fleet and remembers how many messages went to each partition (the producer's
own murmur2 partitioner, keyed by rack; ``simulate`` does the same without producing, for a test that
produces in parts); ``assert_ground_truth`` then checks a stopped daemon's file, with
its Parquet archive when asked:

- every valid frame (and every frame whose impossible readings are only flagged) stored exactly once,
  with its 64 GPU samples, in DuckDB or the archive;
- every malformed message dead-lettered exactly once, every impossible frame dead-lettered as such;
- in ``kafka_offsets``, per partition ``messages = frames_stored + duplicates_dropped + dead_letters``,
  ``messages`` equal to what was produced to that partition (and ``next_offset``, the offsets being dense),
  and in total equal to the messages produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from kafka.partitioner.default import murmur2

from simulator.config import SimulationConfig
from simulator.messages import SimMessage, generate
from simulator.produce import produce
from simulator.truth import GroundTruth
from storage.archive import attach_archive
from storage.database import open_database
from tests.integration.fleet import dead_letter_keys, expected_stored, rejected_frames

FrameKey = tuple[str, int, int]
SMALL_FLEET = SimulationConfig(
    satellites=1,
    racks_per_satellite=3,
    duration_s=300,
    contact="continuous",
    duplicate_rate=0.03,
    loss_rate=0.002,
    malformed_rate=0.01,
    invalid_value_rate=0.005,
)
"""3 racks x 5 minutes, every fault of the link (~930 messages): the fleet of the scenarios that need no more
(each gives its own seed)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """A produced fleet: the simulator's ground truth and the messages produced to each partition."""

    truth: GroundTruth
    by_partition: dict[int, int]

    @property
    def messages(self) -> int:
        """Messages produced in all."""
        return self.truth.messages_sent


def partition_of(key: bytes, partitions: int) -> int:
    """The partition kafka-python's default partitioner sends a keyed message to."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def count_by_partition(messages: list[SimMessage], partitions: int) -> dict[int, int]:
    """How many of ``messages`` go to each partition (only partitions that get some)."""
    counts: dict[int, int] = {}
    for message in messages:
        p = partition_of(message.key, partitions)
        counts[p] = counts.get(p, 0) + 1
    return counts


def simulate(config: SimulationConfig, partitions: int) -> tuple[Sent, list[SimMessage]]:
    """``config``'s messages, not produced yet, and the complete ground truth of producing them all."""
    messages, truth = generate(config)
    listed = list(messages)
    assert truth.complete
    assert len(listed) == truth.messages_sent
    return Sent(truth, count_by_partition(listed, partitions)), listed


def send(bootstrap: str, topic: str, config: SimulationConfig, partitions: int) -> Sent:
    """Produce ``config``'s fleet to ``topic`` (of ``partitions`` partitions); the complete ground truth."""
    sent, messages = simulate(config, partitions)
    produce(messages, bootstrap, topic)
    return sent


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in con.execute(sql).fetchall()]


def assert_ground_truth(db: Path, sent: Sent, *, archive: bool = False) -> None:
    """Assert the stopped daemon's history at ``db`` holds ``sent`` exactly once (see the module docstring).

    With ``archive``, ``rack_frames`` and ``gpu_samples`` are read through the union views over the live
    rows and the Parquet files ``archive_log`` lists (``storage.archive.attach_archive``).
    """
    truth = sent.truth
    con = open_database(db, read_only=True)
    try:
        if archive:
            attach_archive(con)
        keys = [
            (str(r), int(e), int(s)) for r, e, s in _rows(con, "SELECT rack_id, boot_epoch, frame_seq FROM rack_frames")
        ]
        samples = _rows(
            con, "SELECT count(*), count(DISTINCT (rack_id, boot_epoch, frame_seq, node, gpu)) FROM gpu_samples"
        )
        letters = _rows(
            con,
            """SELECT count(*) FILTER (WHERE reason NOT LIKE 'impossible frame%'), count(*),
                      count(DISTINCT (kafka_partition, kafka_offset)) FROM dead_letters""",
        )
        offsets = _rows(
            con,
            """SELECT kafka_partition, messages, frames_stored, duplicates_dropped, dead_letters, next_offset
               FROM kafka_offsets ORDER BY kafka_partition""",
        )
    finally:
        con.close()

    repeated = sorted({k for k in keys if keys.count(k) > 1}) if len(keys) != len(set(keys)) else []
    assert not repeated, f"{len(repeated)} frames stored more than once, e.g. {repeated[:5]}"
    expected = expected_stored(truth)
    missing, extra = expected - set(keys), set(keys) - expected
    assert not missing, f"{len(missing)} frames missing, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} frames stored that were not sent valid, e.g. {sorted(extra)[:5]}"
    assert samples == [(64 * len(keys), 64 * len(keys))], f"GPU samples {samples} for {len(keys)} frames"

    malformed, dead, distinct_dead = letters[0]
    assert malformed == truth.malformed_sent, f"{malformed} malformed dead letters, {truth.malformed_sent} sent"
    assert dead == distinct_dead, f"{dead} dead letters for {distinct_dead} distinct messages"
    assert set(dead_letter_keys(db, "impossible frame%")) == rejected_frames(truth)

    per_partition = {int(p): (int(m), int(f), int(d), int(x), int(n)) for p, m, f, d, x, n in offsets}
    unbalanced = {p: v for p, v in per_partition.items() if v[0] != v[1] + v[2] + v[3]}
    assert not unbalanced, f"messages != frames_stored + duplicates_dropped + dead_letters: {unbalanced}"
    consumed = {p: v[0] for p, v in per_partition.items()}
    assert consumed == sent.by_partition, f"consumed per partition {consumed}, produced {sent.by_partition}"
    assert {p: v[4] for p, v in per_partition.items()} == sent.by_partition, per_partition
    assert sum(consumed.values()) == sent.messages
    assert sum(v[1] for v in per_partition.values()) == len(keys)
    assert sum(v[3] for v in per_partition.values()) == dead
