"""Per-satellite orbit: eclipse phases and ground-station passes."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulator.config import GROUND_STATIONS, SimulationConfig

CONTINUOUS_PASS_S = 600.0


@dataclass(frozen=True, slots=True)
class GroundPass:
    """A contact window; ``backup`` is the second station that may receive the same frames."""

    start_s: float
    end_s: float
    station: str
    backup: str


def _stations(rng: random.Random) -> tuple[str, str]:
    station, backup = rng.sample(GROUND_STATIONS, 2)
    return station, backup


def _orbital_passes(config: SimulationConfig, phase_s: float, rng: random.Random) -> list[GroundPass]:
    period = config.orbit_period_s
    passes: list[GroundPass] = []
    first_orbit = math.floor(phase_s / period) - 1
    last_orbit = math.ceil((config.duration_s + phase_s) / period)
    for orbit in range(first_orbit, last_orbit + 1):
        orbit_start = orbit * period - phase_s
        count = rng.choice((1, 2))
        slot = period / count
        for index in range(count):
            length = min(rng.uniform(config.pass_min_s, config.pass_max_s), slot)
            start = orbit_start + index * slot + rng.uniform(0.0, slot - length)
            if start < config.duration_s and start + length > 0:
                passes.append(GroundPass(start, start + length, *_stations(rng)))
    return passes


def _continuous_passes(config: SimulationConfig, rng: random.Random) -> list[GroundPass]:
    count = math.ceil(config.duration_s / CONTINUOUS_PASS_S) + 1
    return [GroundPass(i * CONTINUOUS_PASS_S, (i + 1) * CONTINUOUS_PASS_S, *_stations(rng)) for i in range(count)]


class OrbitSchedule:
    """Eclipse and contact of one satellite; query times must not decrease between calls."""

    def __init__(self, config: SimulationConfig, rng: random.Random) -> None:
        self.period_s = config.orbit_period_s
        self.phase_s = rng.uniform(0.0, self.period_s)
        self.eclipse_s = rng.uniform(0.7, 1.0) * config.max_eclipse_s
        if config.contact == "continuous":
            self.passes = _continuous_passes(config, rng)
        else:
            self.passes = _orbital_passes(config, self.phase_s, rng)
        self._cursor = 0

    def in_eclipse(self, offset_s: float) -> bool:
        """True while the satellite is in the Earth's shadow."""
        return (offset_s + self.phase_s) % self.period_s < self.eclipse_s

    def contact(self, offset_s: float) -> GroundPass | None:
        """The pass in progress at ``offset_s``, if any."""
        passes = self.passes
        while self._cursor < len(passes) and passes[self._cursor].end_s <= offset_s:
            self._cursor += 1
        if self._cursor < len(passes) and passes[self._cursor].start_s <= offset_s:
            return passes[self._cursor]
        return None

    def last_station(self) -> GroundPass:
        """The pass used to flush on-board storage after the run: the next one, else the last one."""
        return self.passes[min(self._cursor, len(self.passes) - 1)] if self.passes else _fallback()


def _fallback() -> GroundPass:
    return GroundPass(0.0, 0.0, GROUND_STATIONS[0], GROUND_STATIONS[1])
