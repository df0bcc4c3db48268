"""The lifecycle's inputs from frames: per rule, the windows where its condition held and where it did not.

``held`` is ``alerting.evaluate.condition_windows`` of one or more rules, concatenated (``RUN_SCHEMA``).
``clear`` (``CLEAR_SCHEMA``: ``rule, fingerprint, event_at``) is the windows (rack_now: judgements)
evaluated this time where the condition did **not** hold; without them nothing can resolve, since a
missing window means "nothing known" (``alerting.evaluate``). ``observe`` derives both for every rule, the
inputs of ``alerting.lifecycle.advance``. Pure functions, no I/O.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping

import polars as pl

from alerting.evaluate import RUN_SCHEMA, UTC_US, condition_windows, instances
from alerting.rules.rule import Rule
from alerting.rules.vocabulary import HealthState, Scope

CLEAR_SCHEMA: dict[str, pl.DataType] = {"rule": pl.String(), "fingerprint": pl.String(), "event_at": UTC_US}
"""Windows (rack_now: judgements) evaluated where the rule's condition did not hold."""

_HEALTH_STATES: tuple[HealthState, ...] = typing.get_args(HealthState)


def _all_windows(rule: Rule, frames: pl.DataFrame) -> pl.DataFrame:
    """``fingerprint, event_at`` of every row of ``frames``, held or not, each pair once.

    Uses ``instances`` with a probe rule of the same name and scope whose condition always holds: a
    fingerprint is defined by the rule name and the entity only (``alerting.evaluate.fingerprint``).
    """
    probe = Rule.model_validate({"name": rule.name, "scope": rule.scope, "state": {"in": list(_HEALTH_STATES)}})
    rows = frames.select(*rule.entity, rule.event_column).with_columns(pl.lit("ok").alias("state"))
    return instances(probe, rows).select("fingerprint", "event_at").unique(maintain_order=True)


def clear_windows(
    rule: Rule, frames: pl.DataFrame, context: pl.DataFrame | None = None, held: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The windows of ``frames`` where ``rule``'s condition did not hold (``CLEAR_SCHEMA``).

    ``held``: ``condition_windows(rule, frames, context)`` if already computed. A rate window without its
    earlier window has no rate, so it is clear (as in ``condition_windows``, where it ends a run).
    """
    if held is None:
        held = condition_windows(rule, frames, context)
    keys = ["fingerprint", "event_at"]
    clear = _all_windows(rule, frames).join(held.select(keys), on=keys, how="anti")
    return clear.select(pl.lit(rule.name, pl.String).alias("rule"), "fingerprint", "event_at")


def observe(
    rules: Iterable[Rule],
    frames: Mapping[Scope, pl.DataFrame],
    context: Mapping[Scope, pl.DataFrame] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(held, clear)`` of every rule whose scope has a frame in ``frames``, the inputs of ``advance``."""
    held_parts = [pl.DataFrame(schema=RUN_SCHEMA)]
    clear_parts = [pl.DataFrame(schema=CLEAR_SCHEMA)]
    for rule in rules:
        if rule.scope not in frames:
            continue
        frame = frames[rule.scope]
        held = condition_windows(rule, frame, (context or {}).get(rule.scope))
        held_parts.append(held)
        clear_parts.append(clear_windows(rule, frame, held=held))
    return pl.concat(held_parts, how="vertical"), pl.concat(clear_parts, how="vertical")
