"""Healthy GPU and node behaviour, plus the per-GPU fault effects.

Each GPU keeps one Avro ``GpuSample`` dict that is updated in place every frame, so a frame costs a
few arithmetic operations per GPU and no allocation. Fields a v1 schema lacks are ignored when encoding.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

TENANTS: tuple[str, ...] = (
    "acme-ai",
    "orbital-labs",
    "nebula-research",
    "kepler-ml",
    "zenith-vision",
    "helios-llm",
)
MEM_TOTAL_MIB = 81559
MAX_CLOCK_MHZ = 1980
IDLE_POWER_W = 68.0
WATTS_PER_UTIL = 6.2
JOB_CHANGE_PER_S = 1 / 1800
IDLE_SHARE = 0.2
THROTTLE_SW_THERMAL = 0x20
THROTTLE_HW_THERMAL = 0x40
SW_THERMAL_LIMIT_C = 87.0
OVERHEAT_PEAK_C = 97.0
OVERHEAT_RAMP_S = 30.0
DBE_INTERVAL_S = 120.0
XID_DBE = 48

Rand = Callable[[], float]


class Node:
    """A server: one job (tenant, utilization and memory level) holds all its GPUs, or none."""

    __slots__ = ("mem_base", "tenant", "util_base")

    def __init__(self, rng: random.Random) -> None:
        self.tenant: str | None = None
        self.util_base = 0.0
        self.mem_base = 0
        self.new_job(rng)

    def new_job(self, rng: random.Random) -> None:
        """Replace the job: a new tenant with its own load, or idle."""
        if rng.random() < IDLE_SHARE:
            self.tenant, self.util_base, self.mem_base = None, 0.0, 512
        else:
            self.tenant = rng.choice(TENANTS)
            self.util_base = rng.uniform(55.0, 97.0)
            self.mem_base = rng.randint(30_000, 78_000)


class Gpu:
    """One GPU's reused ``GpuSample`` record and its fixed personality."""

    __slots__ = ("dbe_events", "hbm_offset", "nvlink_per_s", "rec", "sbe_per_s", "temp_offset")

    def __init__(self, node: int, gpu: int, rng: random.Random) -> None:
        self.temp_offset = rng.uniform(0.0, 3.0)
        self.hbm_offset = rng.uniform(4.0, 7.0)
        self.sbe_per_s = rng.uniform(1 / 1200, 1 / 300) if rng.random() < 0.1 else 0.0
        self.nvlink_per_s = rng.uniform(1 / 900, 1 / 200) if rng.random() < 0.05 else 0.0
        self.dbe_events = 0
        self.rec: dict[str, Any] = {
            "node": node,
            "gpu": gpu,
            "util_pct": 0.0,
            "mem_used_mib": 0,
            "mem_total_mib": MEM_TOTAL_MIB,
            "power_w": 0.0,
            "temp_c": 0.0,
            "hbm_temp_c": 0.0,
            "sm_clock_mhz": MAX_CLOCK_MHZ,
            "ecc_sbe": 0,
            "ecc_dbe": 0,
            "xid": None,
            "nvlink_errors": 0,
            "row_remap_pending": False,
            "throttle_reasons": 0,
            "tenant": None,
        }

    def reset(self) -> None:
        """A reboot: cumulative counters restart at 0 and the GPU is reset."""
        rec = self.rec
        rec["ecc_sbe"] = rec["ecc_dbe"] = rec["nvlink_errors"] = 0
        rec["row_remap_pending"] = False
        self.dbe_events = 0

    def step(self, rand: Rand, node: Node, inlet_c: float, extra_heat_c: float) -> float:
        """Advance one second of healthy operation; returns the power drawn."""
        rec = self.rec
        r = rand()
        if node.tenant is None:
            util = r * 3.0
            rec["mem_used_mib"] = 512
        else:
            util = min(100.0, node.util_base + (r - 0.5) * 8.0)
            rec["mem_used_mib"] = node.mem_base + int(r * 256)
        power = IDLE_POWER_W + util * WATTS_PER_UTIL + (rand() - 0.5) * 6.0
        temp = inlet_c + 20.0 + util * 0.34 + self.temp_offset + extra_heat_c + (r - 0.5)
        rec["util_pct"] = util
        rec["power_w"] = power
        rec["temp_c"] = temp
        rec["hbm_temp_c"] = temp + self.hbm_offset
        rec["sm_clock_mhz"] = MAX_CLOCK_MHZ - int(util * 2.4) - int(r * 4) * 15
        rec["throttle_reasons"] = THROTTLE_SW_THERMAL if temp > SW_THERMAL_LIMIT_C else 0
        rec["tenant"] = node.tenant
        rec["xid"] = None
        if self.sbe_per_s and rand() < self.sbe_per_s:
            rec["ecc_sbe"] += 1
        if self.nvlink_per_s and rand() < self.nvlink_per_s:
            rec["nvlink_errors"] += 1
        return power

    def overheat(self, rand: Rand, elapsed_s: float) -> None:
        """A failing cooler: temperature ramps to ~97 C, both thermal throttles, clocks drop."""
        rec = self.rec
        share = min(1.0, (elapsed_s + 1.0) / OVERHEAT_RAMP_S)
        temp = rec["temp_c"] + (OVERHEAT_PEAK_C - rec["temp_c"]) * share
        rec["temp_c"] = temp
        rec["hbm_temp_c"] = temp + 5.0
        rec["throttle_reasons"] = THROTTLE_HW_THERMAL | THROTTLE_SW_THERMAL
        rec["sm_clock_mhz"] = 1100 + int(rand() * 200)
        rec["power_w"] *= 0.7

    def double_bit_error(self, elapsed_s: float) -> None:
        """An uncorrectable ECC error at the window's start and every two minutes within it."""
        events = int(elapsed_s // DBE_INTERVAL_S) + 1
        if self.dbe_events < events:
            self.dbe_events = events
            rec = self.rec
            rec["ecc_dbe"] += 1
            rec["xid"] = XID_DBE
            rec["row_remap_pending"] = True
