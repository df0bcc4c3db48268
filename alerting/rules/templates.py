"""Annotation templates: literal text and ``{name}`` / ``{value:.Nf}`` placeholders."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

_VALUE_FORMAT = re.compile(r"\.([0-6])f")


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
