"""Produce a simulated fleet to a test topic and read back what the daemons stored."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ingest.codec import FrameDecoder, RawBatch
from ingest.registry import SchemaRegistry
from ingest.settings import DEFAULT_CONTRACT_DIR
from simulator.config import SimulationConfig
from simulator.messages import generate
from simulator.produce import produce
from simulator.truth import GroundTruth

FrameKey = tuple[str, int, int]


def send_fleet(bootstrap: str, topic: str, config: SimulationConfig) -> GroundTruth:
    """Produce ``config``'s messages to ``topic``; returns the complete ground truth."""
    messages, truth = generate(config)
    produce(messages, bootstrap, topic)
    assert truth.complete
    return truth


def stored_keys(dbs: list[Path]) -> list[FrameKey]:
    """Every stored frame identity across shards (with repeats, if any shard repeats another)."""
    keys: list[FrameKey] = []
    for db in dbs:
        with duckdb.connect(str(db), read_only=True) as con:
            keys += [
                (r, int(e), int(s))
                for r, e, s in con.execute("SELECT rack_id, boot_epoch, frame_seq FROM rack_frames").fetchall()
            ]
    return keys


def expected_stored(truth: GroundTruth) -> set[FrameKey]:
    """Frames that must be stored: valid ones, and those whose impossible readings are only flagged."""
    flagged = {(v.rack_id, v.boot_epoch, v.frame_seq) for v in truth.invalid_values if v.kind != "future_sampled_at"}
    return truth.delivered_ids() | flagged


def rejected_frames(truth: GroundTruth) -> set[FrameKey]:
    """Frames that must be dead-lettered as impossible (sample time in the future)."""
    return {(v.rack_id, v.boot_epoch, v.frame_seq) for v in truth.invalid_values if v.kind == "future_sampled_at"}


def scalar(db: Path, sql: str) -> int:
    """One integer from a stopped daemon's shard."""
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def dead_letter_keys(db: Path, reason_like: str) -> list[FrameKey]:
    """Identities of dead-lettered frames whose reason matches ``reason_like`` (decoded from raw bytes)."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT kafka_partition, kafka_offset, raw_value FROM dead_letters WHERE reason LIKE ?", [reason_like]
        ).fetchall()
    batch = RawBatch("t", [int(p) for p, _, _ in rows], [int(o) for _, o, _ in rows], [0] * len(rows))
    batch.keys = [None] * len(rows)
    batch.values = [bytes(v) for _, _, v in rows]
    frames = FrameDecoder(SchemaRegistry(DEFAULT_CONTRACT_DIR)).decode(batch).frames
    return list(
        zip(frames["rack_id"].to_list(), frames["boot_epoch"].to_list(), frames["frame_seq"].to_list(), strict=True)
    )
