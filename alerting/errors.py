"""Exceptions raised by the alerting package.

The root derives from ``orbitwatch.errors.OrbitwatchError``, so one ``except`` catches the whole product.

AlertingError
├── RulesError        a rules file is invalid: every problem listed, or the YAML syntax error with its line
├── RuleInputError    a frame given to a rule lacks the columns (or the context) the rule needs
├── DeliveryError     a notification hook failed (after its retries)
└── CommandError      an operator's ack/shelve command is malformed or matches no live alert (also a ValueError)
"""

from __future__ import annotations

from collections.abc import Sequence

from orbitwatch.errors import OrbitwatchError


class AlertingError(OrbitwatchError):
    """Base class of every error raised by ``alerting``."""


class RulesError(AlertingError):
    """A rules file (or text) is invalid.

    ``problems`` holds one line per problem, each naming where it is:
    ``rule '<name>' (#<index>): <field path>: <msg>`` (``rule #<index>`` when the rule has no usable name;
    indexes count from 1 in file order), ``hook '<name>' (#<index>): ...``, ``route #<index>: ...``, or
    ``<field path>: <msg>`` for the top level. A YAML syntax error is a single problem and sets ``line``
    (1-based).
    """

    def __init__(self, source: str, problems: Sequence[str], *, line: int | None = None) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems)
        self.line = line
        count = len(self.problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: invalid alert rules ({count} problem{'s' if count != 1 else ''}):\n{listed}")


class RuleInputError(AlertingError):
    """A frame given to a rule lacks columns (or has wrong types), or a rule that needs context got none."""


class DeliveryError(AlertingError):
    """A notification hook failed: ``hook`` is its declared name, ``attempts`` how many times it was tried."""

    def __init__(self, hook: str, message: str, *, attempts: int = 1) -> None:
        self.hook = hook
        self.attempts = attempts
        self.reason = message
        super().__init__(f"hook '{hook}' failed after {attempts} attempt{'s' if attempts != 1 else ''}: {message}")


class CommandError(AlertingError, ValueError):
    """An operator's command is malformed or matches no live alert."""
