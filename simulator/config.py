"""Simulation settings and the fleet's naming scheme.

Satellite and rack *indexes* in settings are 0-based; the ids they name are 1-based:
satellite index 0 is ``sat-0001`` and rack index 0 on it is ``sat-0001/rack-1``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NODES_PER_RACK = 8
GPUS_PER_NODE = 8
GPUS_PER_RACK = NODES_PER_RACK * GPUS_PER_NODE

GROUND_STATIONS: tuple[str, ...] = (
    "gs-svalbard",
    "gs-awarua",
    "gs-inuvik",
    "gs-punta-arenas",
    "gs-hartebeesthoek",
    "gs-kiruna",
)

FaultKind = Literal["gpu_overheat", "ecc_dbe", "seu_storm", "radiator_failure"]
Rate = float


def satellite_id(satellite: int) -> str:
    """Id of the satellite with 0-based index ``satellite``, e.g. ``sat-0001`` for 0."""
    return f"sat-{satellite + 1:04d}"


def rack_id(satellite: int, rack: int) -> str:
    """Id of rack ``rack`` (0-based) on satellite ``satellite`` (0-based), e.g. ``sat-0001/rack-1``."""
    return f"{satellite_id(satellite)}/rack-{rack + 1}"


class FaultSpec(BaseModel):
    """One injected fault: what, where (0-based indexes) and when (seconds after the start)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind
    satellite: int = Field(ge=0)
    rack: int = Field(ge=0)
    node: int = Field(default=0, ge=0, lt=NODES_PER_RACK)
    gpu: int = Field(default=0, ge=0, lt=GPUS_PER_NODE)
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)

    def active(self, offset_s: float) -> bool:
        """True when ``offset_s`` (seconds after the start) lies in ``[start_s, start_s + duration_s)``."""
        return self.start_s <= offset_s < self.start_s + self.duration_s


class SimulationConfig(BaseModel):
    """Everything that determines a simulated run; the same config always yields the same bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    satellites: int = Field(default=2, ge=1)
    racks_per_satellite: int = Field(default=2, ge=1)
    duration_s: float = Field(default=600.0, gt=0)
    frame_interval_s: float = Field(
        default=1.0,
        ge=1.0,
        description="simulated seconds between a rack's frames (accelerated time for long histories); the "
        "rack's state advances one step per frame, so its per-second rates (jobs, ECC, SEUs) apply per frame",
    )
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    boot_epoch: int = Field(default=0, ge=0, description="every rack's boot epoch at the start (after reboots)")
    seed: int = 0

    contact: Literal["orbital", "continuous"] = "orbital"
    flush_on_board_at_end: bool = True
    orbit_period_s: float = Field(default=96 * 60.0, gt=0)
    max_eclipse_s: float = Field(default=35 * 60.0, ge=0)
    pass_min_s: float = Field(default=5 * 60.0, gt=0)
    pass_max_s: float = Field(default=15 * 60.0, gt=0)
    playback_per_s: int = Field(default=10, ge=1, description="stored frames played back per second")

    v2_fraction: Rate = 0.5
    upgrade_fraction: Rate = Field(default=0.25, description="share of v1 racks upgrading to v2 mid-run")
    duplicate_rate: Rate = 0.02
    loss_rate: Rate = 0.001
    reboot_rate_per_hour: float = Field(default=0.0, ge=0)
    malformed_rate: Rate = 0.0
    invalid_value_rate: Rate = 0.0
    faults: list[FaultSpec] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_validator(
        "v2_fraction",
        "upgrade_fraction",
        "duplicate_rate",
        "loss_rate",
        "malformed_rate",
        "invalid_value_rate",
    )
    @classmethod
    def _rate(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("must be within [0, 1]")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.pass_min_s > self.pass_max_s:
            raise ValueError("pass_min_s must not exceed pass_max_s")
        if self.max_eclipse_s > self.orbit_period_s:
            raise ValueError("max_eclipse_s must not exceed orbit_period_s")
        for fault in self.faults:
            if fault.satellite >= self.satellites or fault.rack >= self.racks_per_satellite:
                raise ValueError(
                    f"fault {fault.kind} at satellite {fault.satellite}, rack {fault.rack} "
                    f"is outside the fleet ({self.satellites} x {self.racks_per_satellite})"
                )
        return self

    @property
    def rack_count(self) -> int:
        """Number of racks in the fleet."""
        return self.satellites * self.racks_per_satellite
