"""One alert rule: its scope, its one condition, timing, labels, annotations and grouping."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Self

from pydantic import AfterValidator, Field, StringConstraints, ValidationInfo, field_validator, model_validator

from alerting.rules.conditions import Absent, Condition, ConditionKind, Rate, StateCondition, Threshold
from alerting.rules.templates import parse_template
from alerting.rules.vocabulary import (
    BUILTIN_LABELS,
    DEFAULT_GROUP_BY,
    ENTITY,
    EVENT_COLUMN,
    LABEL_PATTERN,
    BuiltinLabel,
    Duration,
    LabelName,
    RulesModel,
    Scope,
    Severity,
)

_NAME = r"^[a-z][a-z0-9_]*$"


def _not_reserved(name: str) -> str:
    if name in BUILTIN_LABELS:
        raise ValueError(f"reserved, the evaluation sets {', '.join(BUILTIN_LABELS)}")
    return name


def _known_placeholders(data: Mapping[str, Any]) -> frozenset[str] | None:
    """The placeholders a rule being validated may use; None when its labels are invalid (unknown)."""
    if "labels" not in data:
        return None
    scope = data.get("scope")
    builtin = [label for label in BUILTIN_LABELS if scope in (None, "gpu") or label not in ("node", "gpu")]
    return frozenset({*builtin, "value", *data["labels"]})


def _check_template(text: str, info: ValidationInfo) -> str:
    """An annotation: valid syntax, known placeholders (given the rule's scope and labels validated so far)."""
    parts = parse_template(text)
    known = _known_placeholders(info.data)
    problems = []
    for part in parts:
        if isinstance(part, str):
            continue
        if known is not None and part.name not in known:
            problems.append(f"unknown placeholder {{{part.name}}} (known: {', '.join(sorted(known))})")
        elif part.name == "value" and info.data.get("state") is not None:
            problems.append("{value} is always empty in a state rule")
    if problems:
        raise ValueError("\n".join(problems))
    return text


StaticLabel = Annotated[str, StringConstraints(pattern=LABEL_PATTERN), AfterValidator(_not_reserved)]
Template = Annotated[str, AfterValidator(_check_template)]


class Rule(RulesModel):
    """One alert rule; see the ``alerting.rules`` docstring for the meaning of every field."""

    name: str = Field(pattern=_NAME, max_length=64)
    scope: Scope
    severity: Severity | None = None
    threshold: Threshold | None = None
    state: StateCondition | None = None
    rate: Rate | None = None
    absent: Absent | None = None
    for_: Duration = Field(timedelta(0), alias="for")
    keep_firing_for: Duration = timedelta(0)
    labels: dict[StaticLabel, str] = Field(default_factory=dict)
    annotations: dict[LabelName, Template] = Field(default_factory=dict)
    group_by: list[BuiltinLabel] = Field(default_factory=lambda: list(DEFAULT_GROUP_BY), min_length=1)

    @field_validator("group_by")
    @classmethod
    def _groupable(cls, group_by: list[BuiltinLabel], info: ValidationInfo) -> list[BuiltinLabel]:
        problems = [f"'{label}' is listed twice" for label in sorted(set(group_by)) if group_by.count(label) > 1]
        scope = info.data.get("scope")
        problems += [
            f"'{label}' needs scope gpu (the rule has scope {scope})"
            for label in ("node", "gpu")
            if label in group_by and scope not in (None, "gpu")
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return group_by

    @model_validator(mode="after")
    def _one_condition(self) -> Self:
        given = [kind for kind in ("threshold", "state", "rate", "absent") if getattr(self, kind) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise ValueError(f"condition: a rule has exactly one of threshold, state, rate, absent (got {got})")
        problems = []
        if self.absent is not None and self.scope != "rack_now":
            problems.append(f"absent: needs scope rack_now (the rule has scope {self.scope})")
        if self.rate is not None and self.scope == "rack_now":
            problems.append("rate: needs scope gpu or rack (rack_now has no series of windows)")
        if self.severity is not None and (self.threshold is not None or self.rate is not None):
            problems.append(f"severity: a {given[0]} rule takes its severity from its warning/critical levels")
        if (
            self.state is not None
            and self.state.severity_from_state
            and self.severity is not None
            and set(self.state.in_) <= {"degraded", "critical"}
        ):
            problems.append("severity: unused, severity_from_state gives every state in 'in' its own severity")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def condition(self) -> Condition:
        """The rule's one condition."""
        for condition in (self.threshold, self.state, self.rate, self.absent):
            if condition is not None:
                return condition
        raise AssertionError("validated rules have a condition")  # pragma: no cover

    @property
    def kind(self) -> ConditionKind:
        """Which condition the rule has."""
        match self.condition:
            case Threshold():
                return "threshold"
            case StateCondition():
                return "state"
            case Rate():
                return "rate"
            case Absent():
                return "absent"

    @property
    def entity(self) -> tuple[str, ...]:
        """The columns identifying an entity of the rule's scope."""
        return ENTITY[self.scope]

    @property
    def event_column(self) -> str:
        """The column giving the event time of the rule's scope."""
        return EVENT_COLUMN[self.scope]

    @property
    def default_severity(self) -> Severity:
        """The severity of a single-level match: ``severity``, else ``warning``."""
        return self.severity or "warning"

    @property
    def builtin_labels(self) -> tuple[BuiltinLabel, ...]:
        """The built-in labels of the rule's instances, in canonical order."""
        return tuple(label for label in BUILTIN_LABELS if self.scope == "gpu" or label not in ("node", "gpu"))

    @property
    def placeholders(self) -> frozenset[str]:
        """The placeholder names the rule's annotations may use."""
        return frozenset({*self.builtin_labels, "value", *self.labels})

    @property
    def lookback(self) -> timedelta:
        """How far before the evaluated windows the ``context`` must reach (rate rules), else 0."""
        return timedelta(minutes=self.rate.per_minutes) if self.rate is not None else timedelta(0)
