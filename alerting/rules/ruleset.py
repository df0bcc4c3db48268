"""A rules file as a whole: its rules, the hooks it declares, the routes from labels to hooks, and the
checks across them (unique names, routes to declared hooks on labels some rule has)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

from pydantic import Field, ValidationInfo, model_validator

from alerting.rules.rule import Rule
from alerting.rules.vocabulary import BUILTIN_LABELS, ROUTING_LABEL, SEVERITIES, LabelName, RulesModel, Scope

HookKind = Literal["webhook", "kafka", "command", "python", "alertmanager"]
CROSS_CHECKED = "cross_checked"
"""Validation context key: the raw data's cross-references were already checked (``parse_rules``)."""
_HOOK_NAME = r"^[a-z][a-z0-9_-]*$"


class Hook(RulesModel):
    """A notification target, by name; ``settings`` are free for now (url, timeout_s, topic, argv, ...)."""

    name: str = Field(pattern=_HOOK_NAME, max_length=64)
    kind: HookKind
    settings: dict[str, Any] = Field(default_factory=dict)


class Route(RulesModel):
    """Instances whose labels include every ``match`` pair go to ``hook``."""

    match: dict[LabelName, str] = Field(default_factory=dict)
    hook: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` has every pair of ``match``."""
        return all(labels.get(name) == value for name, value in self.match.items())


class RuleSet(RulesModel):
    """A rules file: its rules, the hooks it declares, and the routes from labels to hooks."""

    rules: list[Rule]
    hooks: list[Hook] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, dict) and info.context.get(CROSS_CHECKED):
            return self  # parse_rules checked the raw data, so that these problems are listed with the others
        problems = cross_reference_problems(
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


def cross_reference_problems(
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
