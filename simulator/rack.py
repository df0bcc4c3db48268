"""One rack: power, thermal and radiation state, its 64 GPUs, reboots, upgrades and faults."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.codec import V1_SCHEMA_ID, V2_SCHEMA_ID, ContractCodec
from simulator.config import GPUS_PER_NODE, NODES_PER_RACK, FaultSpec, SimulationConfig, rack_id, satellite_id
from simulator.gpu import JOB_CHANGE_PER_S, Gpu, Node
from simulator.orbit import OrbitSchedule
from simulator.truth import INVALID_KINDS, InvalidKind, RebootRecord, TruthRecorder, UpgradeRecord

BATTERY_J = 120 * 3.6e6
RACK_OVERHEAD_W = 3500.0
MAX_GPU_POWER_W = 690.0
SEU_PER_S = 3 / 3600
SEU_STORM_FACTOR = 50.0
DOSE_STORM_FACTOR = 20.0
RADIATOR_FAILURE_TAU_S = 300.0
REBOOT_DOWNTIME_S = (5, 30)
FUTURE_SHIFT_US = 86_400 * 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRMWARE = {V1_SCHEMA_ID: ("1.8.2", "1.9.0"), V2_SCHEMA_ID: ("2.0.3", "2.1.0")}


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """A frame as recorded on board: identity, sample time and the pre-encoded tail."""

    rack_id: str
    satellite_id: str
    boot_epoch: int
    frame_seq: int
    schema_id: int
    firmware: str
    sampled_us: int
    tail: bytes
    invalid: InvalidKind | None


class Rack:
    """Samples one frame per ``frame_interval_s`` (1 s live) while the rack controller is up."""

    def __init__(
        self,
        config: SimulationConfig,
        indexes: tuple[int, int],
        schedule: OrbitSchedule,
        codec: ContractCodec,
        recorder: TruthRecorder,
    ) -> None:
        sat, rack = indexes
        self.rack_id = rack_id(sat, rack)
        self.satellite_id = satellite_id(sat)
        self.key = self.rack_id.encode()
        self.rng = random.Random(f"{config.seed}:rack:{self.rack_id}")
        self.link_rng = random.Random(f"{config.seed}:link:{self.rack_id}")
        self.phase_s = self.rng.randrange(1000) / 1000
        self.schedule = schedule
        self._config = config
        self._codec = codec
        self._recorder = recorder
        self._start = config.start
        self._start_us = (config.start - EPOCH) // timedelta(microseconds=1)
        self._faults = [f for f in config.faults if (f.satellite, f.rack) == indexes]
        self.schema_id = V2_SCHEMA_ID if self.rng.random() < config.v2_fraction else V1_SCHEMA_ID
        self.firmware = self.rng.choice(FIRMWARE[self.schema_id])
        self._upgrade_at = math.inf
        if self.schema_id == V1_SCHEMA_ID and self.rng.random() < config.upgrade_fraction:
            self._upgrade_at = self.rng.uniform(0.0, config.duration_s)
        self.boot_epoch = config.boot_epoch
        self.next_seq = 0
        self._down_until = -1.0
        self._reboot_p = min(1.0, config.reboot_rate_per_hour / 3600 * config.frame_interval_s)
        self._init_hardware()

    def _init_hardware(self) -> None:
        """Nodes, GPUs and the reused records of the frame tail."""
        self.nodes = [Node(self.rng) for _ in range(NODES_PER_RACK)]
        self.gpus = [Gpu(n, g, self.rng) for n in range(NODES_PER_RACK) for g in range(GPUS_PER_NODE)]
        self.soc = self.rng.uniform(0.75, 0.95)
        self.radiator_c = self.rng.uniform(-8.0, 4.0)
        self._load = 0.7
        self._power: dict[str, Any] = {"bus_w": 0.0, "solar_w": 0.0, "battery_soc": 0.0, "in_eclipse": False}
        self._thermal: dict[str, Any] = {"radiator_c": 0.0, "coolant_inlet_c": 0.0, "coolant_outlet_c": 0.0}
        self._radiation: dict[str, Any] = {"seu_count": 0, "dose_rate_mrad_h": 0.0}
        self._tail = {
            "power": self._power,
            "thermal": self._thermal,
            "radiation": self._radiation,
            "gpus": [gpu.rec for gpu in self.gpus],
        }

    def _at(self, offset_s: float) -> datetime:
        return self._start + timedelta(seconds=offset_s)

    def _lifecycle(self, offset_s: float) -> bool:
        """Handle upgrades and reboots; False while the controller is down."""
        if offset_s >= self._upgrade_at:
            self._upgrade_at = math.inf
            self.schema_id = V2_SCHEMA_ID
            self.firmware = self.rng.choice(FIRMWARE[V2_SCHEMA_ID])
            self._recorder.truth.upgrades.append(
                UpgradeRecord(rack_id=self.rack_id, at=self._at(offset_s), schema_id=V2_SCHEMA_ID)
            )
        if offset_s < self._down_until:
            return False
        if self._reboot_p and self.rng.random() < self._reboot_p:
            self.boot_epoch += 1
            self.next_seq = 0
            self._radiation["seu_count"] = 0
            for gpu in self.gpus:
                gpu.reset()
            self._down_until = offset_s + self.rng.randint(*REBOOT_DOWNTIME_S)
            self._recorder.truth.reboots.append(
                RebootRecord(rack_id=self.rack_id, at=self._at(offset_s), new_epoch=self.boot_epoch)
            )
            return False
        return True

    def sample(self, offset_s: float) -> SampledFrame | None:
        """The frame sampled at ``offset_s`` seconds after the start, or None while rebooting."""
        if not self._lifecycle(offset_s):
            return None
        rng = self.rng
        active = [f for f in self._faults if f.active(offset_s)] if self._faults else []
        eclipse = self.schedule.in_eclipse(offset_s)
        inlet, extra_heat = self._update_rack(offset_s, eclipse, active)
        rand = rng.random
        for node in self.nodes:
            if rand() < JOB_CHANGE_PER_S:
                node.new_job(rng)
        nodes = self.nodes
        total = 0.0
        for index, gpu in enumerate(self.gpus):
            total += gpu.step(rand, nodes[index >> 3], inlet, extra_heat)
        for fault in active:
            self._gpu_fault(fault, offset_s - fault.start_s)
        self._update_power(total, eclipse)
        invalid = rng.choice(INVALID_KINDS) if rand() < self._config.invalid_value_rate else None
        return self._finish(offset_s, invalid)

    def _update_rack(self, offset_s: float, eclipse: bool, active: list[FaultSpec]) -> tuple[float, float]:
        """Thermal and radiation state; returns the healthy coolant inlet and the GPUs' extra heat."""
        rand = self.rng.random
        target = (-18.0 if eclipse else 6.0) + 8.0 * self._load
        self.radiator_c += (target - self.radiator_c) * 0.004
        radiator, inlet_extra, extra_heat = self.radiator_c, 0.0, 0.0
        seu_p, dose = SEU_PER_S, 1.0 + 0.8 * rand()
        for fault in active:
            elapsed = offset_s - fault.start_s
            if fault.kind == "radiator_failure":
                climb = 1.0 - math.exp(-elapsed / RADIATOR_FAILURE_TAU_S)
                radiator += 40.0 * climb
                inlet_extra = 12.0 * climb
                extra_heat = 15.0 + 10.0 * min(1.0, elapsed / fault.duration_s)
            elif fault.kind == "seu_storm":
                seu_p *= SEU_STORM_FACTOR
                dose *= DOSE_STORM_FACTOR
        inlet = 20.0 + 0.25 * self.radiator_c
        thermal = self._thermal
        thermal["radiator_c"] = radiator
        thermal["coolant_inlet_c"] = inlet + inlet_extra
        thermal["coolant_outlet_c"] = inlet + 2.0 + 8.0 * self._load + 2.0 * inlet_extra
        radiation = self._radiation
        if rand() < seu_p:
            radiation["seu_count"] += 1
        radiation["dose_rate_mrad_h"] = dose
        return inlet, extra_heat

    def _gpu_fault(self, fault: FaultSpec, elapsed_s: float) -> None:
        gpu = self.gpus[fault.node * GPUS_PER_NODE + fault.gpu]
        if fault.kind == "gpu_overheat":
            gpu.overheat(self.rng.random, elapsed_s)
        elif fault.kind == "ecc_dbe":
            gpu.double_bit_error(elapsed_s)

    def _update_power(self, gpu_w: float, eclipse: bool) -> None:
        bus = gpu_w + RACK_OVERHEAD_W
        solar = self.rng.uniform(0.0, 4.0) if eclipse else 60_000.0 + 4_000.0 * self.rng.random()
        self.soc = min(1.0, max(0.05, self.soc + (solar - bus) / BATTERY_J))
        self._load = gpu_w / (MAX_GPU_POWER_W * len(self.gpus))
        power = self._power
        power["bus_w"], power["solar_w"] = bus, solar
        power["battery_soc"], power["in_eclipse"] = self.soc, eclipse

    def _finish(self, offset_s: float, invalid: InvalidKind | None) -> SampledFrame:
        sampled_us = self._start_us + round(offset_s * 1_000_000)
        if invalid == "future_sampled_at":
            sampled_us += FUTURE_SHIFT_US
        elif invalid is not None:
            # Every field touched here is recomputed at the next step, so nothing needs restoring.
            rec = self.gpus[self.rng.randrange(len(self.gpus))].rec
            if invalid == "nan_value":
                rec["temp_c"] = math.nan
            else:
                rec["power_w"] = -abs(rec["power_w"]) - 1.0
        encoded = self._codec.encode_tail(self.schema_id, self._tail)
        frame = SampledFrame(
            self.rack_id,
            self.satellite_id,
            self.boot_epoch,
            self.next_seq,
            self.schema_id,
            self.firmware,
            sampled_us,
            encoded,
            invalid,
        )
        self.next_seq += 1
        self._recorder.sampled()
        return frame
