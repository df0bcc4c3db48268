"""The message stream of a simulated fleet, in ground-station receive order."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from simulator.codec import ContractCodec
from simulator.config import SimulationConfig, rack_id, satellite_id
from simulator.malformed import make_malformed
from simulator.orbit import GroundPass, OrbitSchedule
from simulator.rack import EPOCH, Rack, SampledFrame
from simulator.truth import MALFORMED_KINDS, FaultRecord, GroundTruth, MalformedKind, TruthRecorder

LIVE_LATENCY_S = (0.05, 0.4)
DUPLICATE_DELAY_S = (0.05, 2.0)


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One Kafka record: key ``rack_id``, Confluent wire-format value, receive time in ms."""

    key: bytes
    value: bytes
    timestamp_ms: int


_Entry = tuple[int, int, SimMessage, MalformedKind | None]


class Simulation:
    """A deterministic fleet run; iterate :meth:`messages` once, then :attr:`truth` is complete."""

    def __init__(self, config: SimulationConfig, contract_dir: Path | None = None) -> None:
        self.config = config
        self.codec = ContractCodec(contract_dir)
        self._recorder = TruthRecorder()
        self.truth: GroundTruth = self._recorder.truth
        self.truth.faults = _fault_records(config)
        self.racks: list[Rack] = []
        for sat in range(config.satellites):
            schedule = OrbitSchedule(config, random.Random(f"{config.seed}:orbit:{sat}"))
            for rack in range(config.racks_per_satellite):
                self.racks.append(Rack(config, (sat, rack), schedule, self.codec, self._recorder))
        self._boards: list[deque[SampledFrame]] = [deque() for _ in self.racks]
        self._heap: list[_Entry] = []
        self._counter = itertools.count()
        self._start_ms = (config.start - EPOCH) // timedelta(milliseconds=1)
        self._rng = random.Random(f"{config.seed}:malformed")
        self._started = False

    def messages(self) -> Iterator[SimMessage]:
        """All messages ordered by receive time; the truth is complete once this is exhausted."""
        if self._started:
            raise RuntimeError("a Simulation yields its messages only once")
        self._started = True
        interval = self.config.frame_interval_s
        ticks = math.ceil(self.config.duration_s / interval)
        for tick in range(ticks):
            for rack, board in zip(self.racks, self._boards, strict=True):
                self._step(rack, board, tick * interval)
            yield from self._drain(self._start_ms + round((tick + 1) * interval * 1000))
        if self.config.flush_on_board_at_end:
            for rack, board in zip(self.racks, self._boards, strict=True):
                self._playback(rack, board, len(board), ticks * interval, rack.schedule.last_station())
        yield from self._drain(None)
        on_board: dict[tuple[str, int], set[int]] = {}
        for board in self._boards:
            for frame in board:
                on_board.setdefault((frame.rack_id, frame.boot_epoch), set()).add(frame.frame_seq)
        self._recorder.finish(on_board)

    def _drain(self, before_ms: int | None) -> Iterator[SimMessage]:
        heap, truth = self._heap, self.truth
        while heap and (before_ms is None or heap[0][0] < before_ms):
            _, _, message, malformed = heapq.heappop(heap)
            if malformed is not None:
                self._recorder.malformed(truth.messages_sent, malformed)
            truth.messages_sent += 1
            yield message

    def _step(self, rack: Rack, board: deque[SampledFrame], tick_s: float) -> None:
        """One frame interval of ``rack`` from ``tick_s``: sample (phase-shifted within the interval), deliver
        or store it, and play stored frames back at ``playback_per_s`` while in contact."""
        interval = self.config.frame_interval_s
        offset = tick_s + rack.phase_s * interval
        if offset >= self.config.duration_s:
            return
        frame = rack.sample(offset)
        contact = rack.schedule.contact(offset)
        if contact is None:
            if frame is not None:
                board.append(frame)
            return
        if frame is not None:
            self._deliver(rack, frame, offset + rack.link_rng.uniform(*LIVE_LATENCY_S), contact)
        backlog = min(len(board), round(self.config.playback_per_s * interval))
        self._playback(rack, board, backlog, offset, contact)

    def _playback(self, rack: Rack, board: deque[SampledFrame], count: int, offset: float, contact: GroundPass) -> None:
        rate = self.config.playback_per_s
        for index in range(count):
            at_s = offset + (index + rack.link_rng.random()) / rate
            self._deliver(rack, board.popleft(), at_s, contact, stored=True)

    def _deliver(
        self, rack: Rack, frame: SampledFrame, at_s: float, contact: GroundPass, *, stored: bool = False
    ) -> None:
        link, config = rack.link_rng, self.config
        if link.random() < config.loss_rate:
            self._recorder.lost(frame.rack_id, frame.boot_epoch, frame.frame_seq)
            return
        head = {
            "satellite_id": frame.satellite_id,
            "rack_id": frame.rack_id,
            "boot_epoch": frame.boot_epoch,
            "frame_seq": frame.frame_seq,
            "sampled_at": frame.sampled_us,
            "stored": stored,
            "firmware": frame.firmware,
            "ground_station": contact.station,
        }
        codec, schema_id = self.codec, frame.schema_id
        at_ms = self._start_ms + round(at_s * 1000)
        value = codec.headers[schema_id] + codec.encode_head(schema_id, head) + frame.tail
        self._push(SimMessage(rack.key, value, at_ms))
        self._recorder.delivered(frame.rack_id, frame.boot_epoch, frame.frame_seq, schema_id, frame.invalid)
        if link.random() < config.duplicate_rate:
            head["ground_station"] = contact.backup
            copy_ms = at_ms + round(link.uniform(*DUPLICATE_DELAY_S) * 1000)
            copy = codec.headers[schema_id] + codec.encode_head(schema_id, head) + frame.tail
            self._push(SimMessage(rack.key, copy, copy_ms))
            self.truth.duplicates_sent += 1
        if config.malformed_rate and self._rng.random() < config.malformed_rate:
            kind = self._rng.choice(MALFORMED_KINDS)
            bad = make_malformed(kind, value, rack.key, self._rng, codec)
            self._push(SimMessage(rack.key, bad, at_ms), kind)

    def _push(self, message: SimMessage, malformed: MalformedKind | None = None) -> None:
        heapq.heappush(self._heap, (message.timestamp_ms, next(self._counter), message, malformed))


def _fault_records(config: SimulationConfig) -> list[FaultRecord]:
    return [
        FaultRecord(
            kind=fault.kind,
            rack_id=rack_id(fault.satellite, fault.rack),
            satellite_id=satellite_id(fault.satellite),
            node=fault.node,
            gpu=fault.gpu,
            start=config.start + timedelta(seconds=fault.start_s),
            end=config.start + timedelta(seconds=fault.start_s + fault.duration_s),
        )
        for fault in config.faults
    ]


def generate(config: SimulationConfig, contract_dir: Path | None = None) -> tuple[Iterator[SimMessage], GroundTruth]:
    """The run's messages and its truth, which is complete once the iterator is exhausted."""
    simulation = Simulation(config, contract_dir)
    return simulation.messages(), simulation.truth
