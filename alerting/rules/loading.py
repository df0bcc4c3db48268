"""Reading a rules file: YAML (duplicate keys refused) to a ``RuleSet``, or a ``RulesError`` listing every
problem as ``<rule/hook/route>: <field>: <message>``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from alerting.errors import RulesError
from alerting.rules.ruleset import CROSS_CHECKED, RuleSet, cross_reference_problems

_SCALARS = (str, int, float, bool, type(None))


def _raw_items(data: Mapping[Any, Any], key: str) -> list[Any]:
    items = data.get(key)
    return items if isinstance(items, list) else []


def _raw_field(item: object, key: str) -> object:
    return item.get(key) if isinstance(item, dict) else None


def _raw_cross_problems(data: Mapping[Any, Any]) -> list[str]:
    rules, hooks, routes = (_raw_items(data, key) for key in ("rules", "hooks", "routes"))
    return cross_reference_problems(
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
        ruleset = RuleSet.model_validate(data, context={CROSS_CHECKED: True})
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
