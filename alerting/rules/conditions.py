"""A rule's condition, exactly one of: ``threshold``, ``state``, ``rate``, ``absent``."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from alerting.rules.vocabulary import COLUMN_PATTERN, HealthState, RulesModel, Severity

Op = Literal[">", ">=", "<", "<="]
ConditionKind = Literal["threshold", "state", "rate", "absent"]


class _Levels(RulesModel):
    op: Op
    warning: float | None = Field(None, allow_inf_nan=False)
    critical: float | None = Field(None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _levels_are_ordered(self) -> Self:
        if self.warning is None and self.critical is None:
            raise ValueError("needs at least one level: warning and/or critical")
        if self.warning is not None and self.critical is not None:
            rising = self.op in (">", ">=")
            if (self.critical <= self.warning) if rising else (self.critical >= self.warning):
                raise ValueError(
                    f"critical ({self.critical:g}) must be {'above' if rising else 'below'} warning "
                    f"({self.warning:g}) for op '{self.op}'"
                )
        return self

    def levels(self) -> list[tuple[Severity, float]]:
        """The levels set, worst first: ``[("critical", c), ("warning", w)]``."""
        pairs: list[tuple[Severity, float | None]] = [("critical", self.critical), ("warning", self.warning)]
        return [(severity, level) for severity, level in pairs if level is not None]


class Threshold(_Levels):
    """``column op level``: the severity of a window is the worst level it meets."""

    column: str = Field(pattern=COLUMN_PATTERN)


class Rate(_Levels):
    """``(column now - column per_minutes earlier) / per_minutes`` compared with the levels."""

    column: str = Field(pattern=COLUMN_PATTERN)
    per_minutes: int = Field(ge=1, le=24 * 60)


class StateCondition(RulesModel):
    """The ``state`` column is one of ``in``."""

    in_: list[HealthState] = Field(alias="in", min_length=1)
    severity_from_state: bool = False

    @model_validator(mode="after")
    def _sensible(self) -> Self:
        if len(set(self.in_)) != len(self.in_):
            raise ValueError(f"in: lists a state twice: {self.in_}")
        if self.severity_from_state and not {"degraded", "critical"} & set(self.in_):
            raise ValueError("severity_from_state needs degraded or critical in 'in'")
        return self


class Absent(RulesModel):
    """No window for ``for_minutes`` while contact is expected (scope rack_now)."""

    for_minutes: int = Field(ge=1, le=24 * 60)


Condition = Threshold | StateCondition | Rate | Absent
