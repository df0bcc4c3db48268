"""The terms a rules file is written in: severities, scopes, labels, durations, and the frozen model base."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints

from storage.transaction_step import WindowScope

Severity = Literal["info", "warning", "critical"]
Scope = WindowScope
"""What a rule looks at: the GPU windows, the rack windows or the rack-now judgements a batch produced."""
HealthState = Literal["ok", "degraded", "critical", "unknown"]
BuiltinLabel = Literal["rule", "satellite", "rack_id", "node", "gpu", "severity"]

SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
"""Severities from least to most severe."""
BUILTIN_LABELS: tuple[BuiltinLabel, ...] = ("rule", "satellite", "rack_id", "node", "gpu", "severity")
"""Labels the evaluation sets on every instance (``node``/``gpu`` in scope gpu only), in canonical order."""
ROUTING_LABEL = "playback"
"""Routes may also match ``playback: "true"`` (raised from data played back long after it was sampled),
to send those to another hook; it is not an alert label (so it does not change fingerprints or groups)."""
ENTITY: dict[Scope, tuple[str, ...]] = {
    "gpu": ("rack_id", "node", "gpu"),
    "rack": ("rack_id",),
    "rack_now": ("rack_id",),
}
"""Per scope, the columns identifying an entity (what a fingerprint hashes, with the rule name)."""
EVENT_COLUMN: dict[Scope, str] = {"gpu": "window_start", "rack": "window_start", "rack_now": "as_of"}
"""Per scope, the column giving an instance's event time."""
DEFAULT_GROUP_BY: tuple[BuiltinLabel, ...] = ("rule", "satellite")

LABEL_PATTERN = r"^[a-z_][a-z0-9_]*$"
"""What a label (or annotation) name looks like."""
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""What a column name looks like."""
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value: object) -> timedelta:
    """``30s``, ``2m``, ``1h``, ``1h30m``, ``0`` (or a ``timedelta``) as a non-negative ``timedelta``."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"{value} is negative")
        return value
    if (isinstance(value, int) and not isinstance(value, bool) and value == 0) or value == "0":
        return timedelta(0)
    if isinstance(value, str) and value and (match := _DURATION.fullmatch(value)):
        hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(f"{value!r} is not a duration: use a whole number with a unit (30s, 2m, 1h, 1h30m) or 0")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_PATTERN)]


class RulesModel(BaseModel):
    """The base of every part of a rules file: frozen, unknown fields refused, fields by name or alias."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)
