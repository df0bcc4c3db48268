"""Alert rules: typed, frozen models loaded from YAML; an invalid file names every problem's rule and field.

A rules file (see ``deploy/alerts/rules.example.yaml``)::

    rules:
      - name: gpu_temperature            # unique, ^[a-z][a-z0-9_]*$
        scope: gpu                       # gpu | rack | rack_now: which frame the rule evaluates
        threshold: {column: temp_max, op: ">=", warning: 83, critical: 90}
        for: 2m                          # pending until the condition held this long (event time)
        keep_firing_for: 5m              # stays firing this long after the condition stopped holding
        labels: {team: compute}          # static labels
        annotations: {summary: "{rack_id} node {node} GPU {gpu} at {value:.1f} C"}
        group_by: [rule, satellite]      # default: one notification group per rule and satellite
    hooks:
      - {name: ops_webhook, kind: webhook, settings: {url: "https://ops.example/alerts", timeout_s: 5}}
    routes:
      - {match: {severity: critical}, hook: ops_webhook}

**Scopes** (the frame a rule reads, one row per entity and window; see ``alerting.evaluate``):
``gpu``: GPU windows (``WindowTables.gpu``, view ``gpu_rollups_1m``), entity ``rack_id, node, gpu``, event
time ``window_start``; ``rack``: judged rack windows (``judge_racks``, view ``rack_rollups_1m``), entity
``rack_id``, event time ``window_start``; ``rack_now``: the ground's judgement now (``judge_now``, view
``fleet_health_now``), entity ``rack_id``, event time ``as_of``.

**Conditions**, exactly one per rule:

- ``threshold: {column, op, warning, critical}``: ``column op level``; at least one level; the severity of
  a window is the worst level met; with both levels, the critical one must be the worse in ``op``'s
  direction (above warning for ``>``/``>=``, below it for ``<``/``<=``).
- ``state: {in: [...], severity_from_state}``: the ``state`` column is one of ``in``
  (``ok|degraded|critical|unknown``). With ``severity_from_state``, a ``critical`` state gives severity
  critical and ``degraded`` gives warning (other states: the rule's ``severity``); else every match has
  the rule's ``severity``.
- ``rate: {column, per_minutes, op, warning, critical}`` (scopes gpu and rack): ``(value now - value
  per_minutes earlier) / per_minutes``, in units per minute, compared like a threshold. The earlier window
  must be in the frame or in the ``context`` given to the evaluation (``Rule.lookback``); without it the
  window has no rate and does not fire.
- ``absent: {for_minutes}`` (scope rack_now only): no window of the rack in the last ``for_minutes``
  minutes (measured from the end of its last window, ``last_window_start + 1 minute``, to ``as_of``)
  **while ``in_contact_expected`` is true**. Silence during a predicted loss of signal never fires: the
  rack is out of sight by design, ``fleet_health_now`` reports it ``unknown``.

``severity`` (``info|warning|critical``, default ``warning``) is the severity of single-level rules
(``state``, ``absent``); threshold and rate rules take theirs from their levels and must not set it.

**Durations** (``for``, ``keep_firing_for``): whole numbers with units, ``30s``, ``2m``, ``1h``,
``1h30m``, or ``0`` (the default). A bare number is refused (seconds or minutes?).

**Labels**: every instance carries ``rule``, ``satellite`` (the part of ``rack_id`` before ``/``),
``rack_id``, ``node`` and ``gpu`` (scope gpu), ``severity``, plus the rule's static ``labels`` (names
``^[a-z_][a-z0-9_]*$``, the built-in names are reserved). ``group_by`` picks among the built-in ones.

**Annotations** are templates: ``{rack_id}``, ``{node}``, ``{gpu}`` (scope gpu), ``{value}``,
``{value:.Nf}`` (N decimals, 0-6), ``{severity}``, ``{satellite}``, ``{rule}`` and any static label;
``{{``/``}}`` for literal braces. An unknown placeholder, a format on anything but ``value``, or
``{value}`` in a state rule (which has no value) is an error naming the annotation.

**Hooks** are declared by ``name`` and ``kind`` (``webhook|kafka|command|python|alertmanager``) with free ``settings``
for now (``url``, ``timeout_s``, ``max_attempts``, ``backoff_s``, ``hmac_secret_env``, ``topic``,
``argv``, ``callable``). **Routes** ``{match: {label: value}, hook}`` must name a declared hook and match
labels some rule produces; an instance goes to the hook of *every* route whose ``match`` it satisfies, in
route order (``RuleSet.hooks_for``); an empty ``match`` matches everything.
"""

from __future__ import annotations

import re
import string
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from alerting.errors import RulesError
from storage.transaction_step import WindowScope

Severity = Literal["info", "warning", "critical"]
Scope = WindowScope
"""What a rule looks at: the GPU windows, the rack windows or the rack-now judgements a batch produced."""
Op = Literal[">", ">=", "<", "<="]
HealthState = Literal["ok", "degraded", "critical", "unknown"]
HookKind = Literal["webhook", "kafka", "command", "python", "alertmanager"]
BuiltinLabel = Literal["rule", "satellite", "rack_id", "node", "gpu", "severity"]
ConditionKind = Literal["threshold", "state", "rate", "absent"]

SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
"""Severities from least to most severe."""
BUILTIN_LABELS: tuple[BuiltinLabel, ...] = ("rule", "satellite", "rack_id", "node", "gpu", "severity")
ROUTING_LABEL = "playback"
"""Routes may also match ``playback: "true"`` (raised from data played back long after it was sampled),
to send those to another hook; it is not an alert label (so it does not change fingerprints or groups)."""
"""Labels the evaluation sets on every instance (``node``/``gpu`` in scope gpu only), in canonical order."""
ENTITY: dict[Scope, tuple[str, ...]] = {
    "gpu": ("rack_id", "node", "gpu"),
    "rack": ("rack_id",),
    "rack_now": ("rack_id",),
}
"""Per scope, the columns identifying an entity (what a fingerprint hashes, with the rule name)."""
EVENT_COLUMN: dict[Scope, str] = {"gpu": "window_start", "rack": "window_start", "rack_now": "as_of"}
"""Per scope, the column giving an instance's event time."""
DEFAULT_GROUP_BY: tuple[BuiltinLabel, ...] = ("rule", "satellite")

_NAME = r"^[a-z][a-z0-9_]*$"
_HOOK_NAME = r"^[a-z][a-z0-9_-]*$"
_LABEL = r"^[a-z_][a-z0-9_]*$"
_COLUMN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_VALUE_FORMAT = re.compile(r"\.([0-6])f")
_CROSS_CHECKED = "cross_checked"
_SCALARS = (str, int, float, bool, type(None))


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
LabelName = Annotated[str, StringConstraints(pattern=_LABEL)]


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A ``{name}`` or ``{value:.Nf}`` field of an annotation template."""

    name: str
    decimals: int | None = None


TemplatePart = str | Placeholder


def parse_template(text: str) -> list[TemplatePart]:
    """Literal text and placeholders of ``text``; ``ValueError`` for bad syntax, conversions or formats.

    Placeholder *names* are not checked here (``Rule.placeholders`` lists the ones a rule may use).
    """
    parts: list[TemplatePart] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad template syntax: {exc}") from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field is None:
            continue
        if conversion:
            raise ValueError(f"{{{field}!{conversion}}}: conversions are not supported")
        decimals = None
        if spec:
            fmt = _VALUE_FORMAT.fullmatch(spec)
            if field != "value" or fmt is None:
                raise ValueError(f"{{{field}:{spec}}}: the only format is {{value:.Nf}} with N from 0 to 6")
            decimals = int(fmt.group(1))
        parts.append(Placeholder(field, decimals))
    return parts


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)


class _Levels(_Model):
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

    column: str = Field(pattern=_COLUMN)


class Rate(_Levels):
    """``(column now - column per_minutes earlier) / per_minutes`` compared with the levels."""

    column: str = Field(pattern=_COLUMN)
    per_minutes: int = Field(ge=1, le=24 * 60)


class StateCondition(_Model):
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


class Absent(_Model):
    """No window for ``for_minutes`` while contact is expected (scope rack_now)."""

    for_minutes: int = Field(ge=1, le=24 * 60)


Condition = Threshold | StateCondition | Rate | Absent


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


StaticLabel = Annotated[str, StringConstraints(pattern=_LABEL), AfterValidator(_not_reserved)]
Template = Annotated[str, AfterValidator(_check_template)]


class Rule(_Model):
    """One alert rule; see the module docstring for the meaning of every field."""

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


class Hook(_Model):
    """A notification target, by name; ``settings`` are free for now (url, timeout_s, topic, argv, ...)."""

    name: str = Field(pattern=_HOOK_NAME, max_length=64)
    kind: HookKind
    settings: dict[str, Any] = Field(default_factory=dict)


class Route(_Model):
    """Instances whose labels include every ``match`` pair go to ``hook``."""

    match: dict[LabelName, str] = Field(default_factory=dict)
    hook: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` has every pair of ``match``."""
        return all(labels.get(name) == value for name, value in self.match.items())


class RuleSet(_Model):
    """A rules file: its rules, the hooks it declares, and the routes from labels to hooks."""

    rules: list[Rule]
    hooks: list[Hook] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, dict) and info.context.get(_CROSS_CHECKED):
            return self  # parse_rules checked the raw data, so that these problems are listed with the others
        problems = _cross_problems(
            [r.name for r in self.rules],
            [dict(r.labels) for r in self.rules],
            [h.name for h in self.hooks],
            [(r.hook, dict(r.match)) for r in self.routes],
        )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def rule(self, name: str) -> Rule:
        """The rule called ``name`` (``KeyError`` if none)."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def for_scope(self, scope: Scope) -> list[Rule]:
        """The rules evaluating ``scope``'s frame, in file order."""
        return [rule for rule in self.rules if rule.scope == scope]

    def hooks_for(self, labels: Mapping[str, str]) -> list[Hook]:
        """The hooks of every route ``labels`` matches, in route order, each once."""
        by_name = {hook.name: hook for hook in self.hooks}
        names = dict.fromkeys(route.hook for route in self.routes if route.matches(labels))
        return [by_name[name] for name in names]


def _cross_problems(
    rule_names: Sequence[object],
    rule_labels: Sequence[object],
    hook_names: Sequence[object],
    routes: Sequence[tuple[object, object]],
) -> list[str]:
    """Problems across items: duplicate names, routes to undeclared hooks or on labels no rule has."""
    problems = []
    first: dict[str, int] = {}
    for index, name in enumerate(rule_names, 1):
        if isinstance(name, str) and name in first:
            problems.append(f"rule '{name}' (#{index}): name: duplicate of rule #{first[name]}")
        elif isinstance(name, str):
            first[name] = index
    first.clear()
    for index, name in enumerate(hook_names, 1):
        if isinstance(name, str) and name in first:
            problems.append(f"hook '{name}' (#{index}): name: duplicate of hook #{first[name]}")
        elif isinstance(name, str):
            first[name] = index
    declared = sorted(first)
    labels: set[str] = {*BUILTIN_LABELS, ROUTING_LABEL}
    for static in rule_labels:
        if isinstance(static, dict):
            labels.update(key for key in static if isinstance(key, str))
    for index, (hook, match) in enumerate(routes, 1):
        if isinstance(hook, str) and hook not in first:
            problems.append(
                f"route #{index}: hook: '{hook}' is not a declared hook (declared: {', '.join(declared) or 'none'})"
            )
        if not isinstance(match, dict):
            continue
        for key, value in match.items():
            if isinstance(key, str) and key not in labels:
                problems.append(
                    f"route #{index}: match.{key}: no rule has this label (labels: {', '.join(sorted(labels))})"
                )
            elif key == "severity" and value not in SEVERITIES:
                problems.append(f"route #{index}: match.severity: {value!r} is not one of {', '.join(SEVERITIES)}")
    return problems


def _raw_items(data: Mapping[Any, Any], key: str) -> list[Any]:
    items = data.get(key)
    return items if isinstance(items, list) else []


def _raw_field(item: object, key: str) -> object:
    return item.get(key) if isinstance(item, dict) else None


def _raw_cross_problems(data: Mapping[Any, Any]) -> list[str]:
    rules, hooks, routes = (_raw_items(data, key) for key in ("rules", "hooks", "routes"))
    return _cross_problems(
        [_raw_field(r, "name") for r in rules],
        [_raw_field(r, "labels") for r in rules],
        [_raw_field(h, "name") for h in hooks],
        [(_raw_field(r, "hook"), _raw_field(r, "match")) for r in routes],
    )


def _item_prefix(data: Mapping[Any, Any], section: str, index: int) -> str:
    kind = {"rules": "rule", "hooks": "hook", "routes": "route"}[section]
    items = _raw_items(data, section)
    name = _raw_field(items[index], "name") if index < len(items) else None
    if section != "routes" and isinstance(name, str) and name:
        return f"{kind} '{name}' (#{index + 1})"
    return f"{kind} #{index + 1}"


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            path += f".{part}" if path else part
    return path


def _format_errors(error: ValidationError, data: Mapping[Any, Any]) -> list[str]:
    """One line per problem: ``<item prefix>: <field path>: <message>``, messages split on newlines."""
    lines = []
    for detail in error.errors(include_url=False):
        loc = detail["loc"]
        prefix = ""
        if len(loc) >= 2 and loc[0] in ("rules", "hooks", "routes") and isinstance(loc[1], int):
            prefix = _item_prefix(data, str(loc[0]), loc[1])
            loc = loc[2:]
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] not in ("missing", "extra_forbidden", "value_error") and isinstance(
            detail["input"], _SCALARS
        ):
            message += f" (got {detail['input']!r})"
        path = _field_path(loc)
        for text in message.split("\n"):
            head = ": ".join(part for part in (prefix, path) if part)
            lines.append(f"{head}: {text}" if head else text)
    return lines


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (plain PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first on line {seen[key]})",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """The ``RuleSet`` in YAML ``text``; ``RulesError`` listing every problem (``source`` names the file)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is None:
            raise RulesError(source, [f"YAML syntax error: {exc}"]) from exc
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        raise RulesError(source, [f"{where}: YAML syntax error: {exc.problem or exc}"], line=mark.line + 1) from exc
    except yaml.YAMLError as exc:
        raise RulesError(source, [f"YAML error: {exc}"]) from exc
    if data is None:
        raise RulesError(source, ["the file is empty: expected a mapping with a 'rules' list"])
    if not isinstance(data, dict):
        raise RulesError(source, [f"expected a mapping with a 'rules' list at the top, got {type(data).__name__}"])
    problems = _raw_cross_problems(data)
    try:
        ruleset = RuleSet.model_validate(data, context={_CROSS_CHECKED: True})
    except ValidationError as exc:
        problems = _format_errors(exc, data) + problems
    if problems:
        raise RulesError(source, list(dict.fromkeys(problems)))
    return ruleset


def load_rules(path: str | Path) -> RuleSet:
    """The ``RuleSet`` of the YAML file at ``path``; ``RulesError`` if it cannot be read or is invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(str(path), [f"cannot read the rules file: {exc}"]) from exc
    return parse_rules(text, str(path))
