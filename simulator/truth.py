"""What a simulated run really sent: the answer key for tests and benchmarks.

Invariants once the message iterator is exhausted::

    messages_sent == distinct_frames_sent + invalid_frames_sent + duplicates_sent + malformed_sent
    frames_sampled == distinct_frames_sent + invalid_frames_sent + frames_lost + frames_undelivered_on_board

``delivered`` holds the identities of the ``distinct_frames_sent`` valid frames only; frames with
impossible values are listed in ``invalid_values``. ``frames_by_schema_id`` counts distinct delivered
frames (valid and invalid) by the schema id they were written with.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from simulator.config import FaultKind

MalformedKind = Literal["bad_magic", "unknown_schema_id", "truncated", "trailing_garbage", "garbage_body"]
InvalidKind = Literal["nan_value", "negative_power", "future_sampled_at"]
MALFORMED_KINDS: tuple[MalformedKind, ...] = (
    "bad_magic",
    "unknown_schema_id",
    "truncated",
    "trailing_garbage",
    "garbage_body",
)
INVALID_KINDS: tuple[InvalidKind, ...] = ("nan_value", "negative_power", "future_sampled_at")

FrameKey = tuple[str, int]


class MalformedRecord(BaseModel):
    index_in_stream: int
    kind: MalformedKind


class InvalidValueRecord(BaseModel):
    rack_id: str
    boot_epoch: int
    frame_seq: int
    kind: InvalidKind


class RebootRecord(BaseModel):
    rack_id: str
    at: datetime
    new_epoch: int


class UpgradeRecord(BaseModel):
    rack_id: str
    at: datetime
    schema_id: int


class FaultRecord(BaseModel):
    kind: FaultKind
    rack_id: str
    satellite_id: str
    node: int
    gpu: int
    start: datetime
    end: datetime


class SeqRange(BaseModel):
    """Frames ``first_seq..last_seq`` (inclusive) of one ``(rack_id, boot_epoch)``."""

    rack_id: str
    boot_epoch: int
    first_seq: int
    last_seq: int

    @property
    def count(self) -> int:
        """Number of frames in the range."""
        return self.last_seq - self.first_seq + 1


class GroundTruth(BaseModel):
    """Counts and identities of everything a run sent, lost or kept on board."""

    messages_sent: int = 0
    frames_sampled: int = 0
    distinct_frames_sent: int = 0
    invalid_frames_sent: int = 0
    duplicates_sent: int = 0
    frames_lost: int = 0
    frames_undelivered_on_board: int = 0
    malformed_sent: int = 0
    frames_by_schema_id: dict[int, int] = Field(default_factory=dict)
    malformed: list[MalformedRecord] = Field(default_factory=list)
    invalid_values: list[InvalidValueRecord] = Field(default_factory=list)
    reboots: list[RebootRecord] = Field(default_factory=list)
    upgrades: list[UpgradeRecord] = Field(default_factory=list)
    faults: list[FaultRecord] = Field(default_factory=list)
    delivered: list[SeqRange] = Field(default_factory=list)
    lost: list[SeqRange] = Field(default_factory=list)
    undelivered: list[SeqRange] = Field(default_factory=list)
    complete: bool = False

    def write_json(self, path: Path) -> None:
        """Write the truth as JSON."""
        path.write_text(self.model_dump_json(indent=1))

    @classmethod
    def load_json(cls, path: Path) -> GroundTruth:
        """Read a truth written by :meth:`write_json`."""
        return cls.model_validate_json(path.read_text())

    def delivered_ids(self) -> set[tuple[str, int, int]]:
        """Every delivered valid frame as ``(rack_id, boot_epoch, frame_seq)``."""
        return {(r.rack_id, r.boot_epoch, seq) for r in self.delivered for seq in range(r.first_seq, r.last_seq + 1)}


def to_ranges(seqs: dict[FrameKey, set[int]]) -> list[SeqRange]:
    """Compress sets of sequence numbers into sorted inclusive ranges."""
    ranges: list[SeqRange] = []
    for (rack, epoch), values in sorted(seqs.items()):
        ordered = sorted(values)
        first = prev = ordered[0] if ordered else 0
        for seq in ordered[1:]:
            if seq != prev + 1:
                ranges.append(SeqRange(rack_id=rack, boot_epoch=epoch, first_seq=first, last_seq=prev))
                first = seq
            prev = seq
        if ordered:
            ranges.append(SeqRange(rack_id=rack, boot_epoch=epoch, first_seq=first, last_seq=prev))
    return ranges


class TruthRecorder:
    """Accumulates a :class:`GroundTruth` while the messages are generated."""

    def __init__(self) -> None:
        self.truth = GroundTruth()
        self._delivered: dict[FrameKey, set[int]] = defaultdict(set)
        self._lost: dict[FrameKey, set[int]] = defaultdict(set)

    def sampled(self) -> None:
        """A frame was recorded on board."""
        self.truth.frames_sampled += 1

    def delivered(self, rack: str, epoch: int, seq: int, schema_id: int, invalid: InvalidKind | None) -> None:
        """A frame's first copy was sent."""
        truth = self.truth
        truth.frames_by_schema_id[schema_id] = truth.frames_by_schema_id.get(schema_id, 0) + 1
        if invalid is None:
            truth.distinct_frames_sent += 1
            self._delivered[(rack, epoch)].add(seq)
        else:
            truth.invalid_frames_sent += 1
            truth.invalid_values.append(InvalidValueRecord(rack_id=rack, boot_epoch=epoch, frame_seq=seq, kind=invalid))

    def lost(self, rack: str, epoch: int, seq: int) -> None:
        """A frame was lost on the link for good."""
        self.truth.frames_lost += 1
        self._lost[(rack, epoch)].add(seq)

    def malformed(self, index: int, kind: MalformedKind) -> None:
        """Message ``index`` of the stream is a malformed one."""
        self.truth.malformed_sent += 1
        self.truth.malformed.append(MalformedRecord(index_in_stream=index, kind=kind))

    def finish(self, on_board: dict[FrameKey, set[int]]) -> None:
        """Fill in the identity ranges and mark the truth complete."""
        truth = self.truth
        truth.delivered = to_ranges(self._delivered)
        truth.lost = to_ranges(self._lost)
        truth.undelivered = to_ranges(on_board)
        truth.frames_undelivered_on_board = sum(r.count for r in truth.undelivered)
        truth.complete = True
