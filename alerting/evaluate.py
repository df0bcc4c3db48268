"""Evaluating alert rules on processed windows: pure polars, vectorised, no I/O and no clock.

**Inputs**, per scope (``alerting.rules``): ``gpu``: GPU windows (``processing.windows.compute_windows(...)
.gpu`` or the view ``gpu_rollups_1m``); ``rack``: *judged* rack windows (``judge_racks`` or the view
``rack_rollups_1m``: rack rules on ``state`` need the rack's own judgement); ``rack_now``: the ground's
judgement (``processing.health.judge_now``, ``NOW_COLUMNS``, the view ``fleet_health_now``). A frame may
hold several windows per entity; only the columns a rule reads are required.

**Instances** (``instances``, ``INSTANCE_SCHEMA``): one row per entity and window in which the rule's
condition holds, in the frame's row order:

- ``rule``; ``fingerprint``: 16 hex digits, a hash of the rule name and the entity (``rack_id``, plus
  ``node`` and ``gpu`` in scope gpu), *not* of the severity or the static labels, so a warning that
  becomes critical is the same alert. Stable across processes, machines and polars versions: it is
  defined arithmetically (``fingerprint`` is the reference implementation, the vectorised one matches it);
- ``severity`` (``info|warning|critical``, ``SEVERITY_RANK`` orders them), ``value`` (Float64: the column
  for threshold rules, the rate per minute, the minutes of silence for absent rules, null for state rules);
- ``event_at``: ``window_start`` (gpu, rack) or ``as_of`` (rack_now), UTC;
- ``labels``: a JSON object (keys sorted, every value a string) of the built-in labels (``rule``,
  ``satellite``, ``rack_id``, ``node``, ``gpu``, ``severity``) and the rule's static labels. JSON rather
  than a struct, so that instances of rules with different labels concatenate into one frame, compare as
  plain strings and go to hooks as they are;
- ``group``: the JSON object of the rule's ``group_by`` labels: instances with equal ``group`` are one
  notification (``[rule, satellite]``: a satellite losing its radiator is one group, not one per rack);
- ``summary``: the rendered ``summary`` annotation, else ``"<rule> <severity> on <entity> (value <v>)"``;
  ``annotations``: a JSON object of every rendered annotation (``{}`` when none). Null placeholders render
  as ``-``.

**The lifecycle** (another module) turns instances into alerts; this is how it is meant to apply the
timing fields, in event time, per fingerprint. ``condition_windows`` gives what it needs:

1. *Runs.* The condition holds over a run of windows: consecutive windows of the entity (``event_at``
   one minute apart) in which it held. A window of the entity where it does not hold, or a minute with no
   window at all (no data: nothing is known, so nothing is assumed), ends the run. In scope rack_now,
   ``event_at`` is the judgement's ``as_of`` and only a judgement in which the condition does not hold
   ends a run. ``held_for`` is the run's span up to the window (``event_at - run_start``, plus the window's
   minute in the windowed scopes: one window holding is one minute held).
2. *``for``.* An instance is *pending* while ``held_for < for`` and *firing* from the first window of the
   run where ``held_for >= for`` (``for_met``). ``for: 0`` fires on the first window. In the windowed
   scopes ``for`` is counted in whole windows: ``for: 90s`` needs two.
3. *``keep_firing_for``.* A firing alert resolves only once the condition has not held for
   ``keep_firing_for`` after the end of its last held window (``event_at + 1 minute``; rack_now: its
   ``as_of``), i.e. at the first evaluated window or judgement at or after that moment with no held window
   since. If the condition holds again before that, it is the same alert, still firing, and the new run
   does not wait ``for`` again. ``keep_firing_for: 0`` resolves at the first window that does not hold.
4. *Severities.* One alert per fingerprint whatever its level. ``for`` counts from the first window
   meeting *any* level (a warning turning critical does not wait ``for`` again). A firing alert's severity
   is the worst severity of its held windows within the last ``keep_firing_for`` (its latest window's when
   0): escalation is immediate, de-escalation is damped like resolution. A change of severity is an update
   of the alert (and its ``labels``), not a new one.
5. *Late data.* Windows are recomputed when late frames arrive; the lifecycle re-evaluates the recomputed
   windows and keys its state by ``(fingerprint, event_at)``, so evaluating a window twice is idempotent.
   Rate rules need ``Rule.lookback`` of earlier windows as ``context``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

import polars as pl

from alerting.errors import RuleInputError
from alerting.rules.conditions import Absent, Rate, StateCondition, Threshold
from alerting.rules.rule import Rule
from alerting.rules.templates import Placeholder, parse_template
from alerting.rules.vocabulary import Scope, Severity

WINDOW = timedelta(minutes=1)
"""The length of a window (``window_start`` to the next)."""
UTC_US = pl.Datetime("us", "UTC")
INSTANCE_SCHEMA: dict[str, pl.DataType] = {
    "rule": pl.String(),
    "fingerprint": pl.String(),
    "severity": pl.String(),
    "value": pl.Float64(),
    "event_at": UTC_US,
    "labels": pl.String(),
    "group": pl.String(),
    "summary": pl.String(),
    "annotations": pl.String(),
}
"""The columns of ``instances``."""
RUN_SCHEMA: dict[str, pl.DataType] = INSTANCE_SCHEMA | {
    "run_start": UTC_US,
    "held_for": pl.Duration("us"),
    "for_met": pl.Boolean(),
}
"""The columns of ``condition_windows``."""
SEVERITY_RANK: dict[Severity, int] = {"info": 0, "warning": 1, "critical": 2}

_HASH_MODULI = ((257, 2_147_483_647), (263, 2_147_483_629))
_HEX = "0123456789abcdef"
_SEPARATOR = "\x1f"
_NULL = "-"


def _hash_key(rule_name: str, entity: Mapping[str, object]) -> str:
    return rule_name + "".join(f"{_SEPARATOR}{name}={value}" for name, value in entity.items())


def fingerprint(rule_name: str, rack_id: str, node: int | None = None, gpu: int | None = None) -> str:
    """The fingerprint of an entity of a rule (``node`` and ``gpu`` for scope gpu): the reference definition.

    Key: ``rule_name`` then ``"\\x1frack_id=<rack_id>"`` (and ``"\\x1fnode=<n>\\x1fgpu=<g>"``), UTF-8.
    Hash: ``h_j = sum(byte_i * b_j ** i) mod m_j`` for ``(b, m)`` in ``(257, 2**31 - 1)`` and
    ``(263, 2**31 - 19)``; the fingerprint is ``h_1 * 2**31 + h_2`` as 16 lower-case hex digits.
    """
    if (node is None) != (gpu is None):
        raise ValueError("node and gpu go together (scope gpu) or are both None")
    entity: dict[str, object] = {"rack_id": rack_id}
    if node is not None:
        entity |= {"node": node, "gpu": gpu}
    data = _hash_key(rule_name, entity).encode()
    h1, h2 = (sum(byte * pow(base, i, mod) for i, byte in enumerate(data)) % mod for base, mod in _HASH_MODULI)
    return f"{h1 * 2**31 + h2:016x}"


def _fingerprints(rule: Rule, rows: pl.DataFrame) -> pl.Series:
    """The vectorised ``fingerprint`` of every row of ``rows`` (entity columns)."""
    key = pl.concat_str(
        [pl.lit(rule.name), *(pl.lit(f"{_SEPARATOR}{c}=") + pl.col(c).cast(pl.String) for c in rule.entity)]
    ).fill_null("")
    keyed = rows.select(key.alias("_key"))
    longest = keyed.select(pl.col("_key").str.len_bytes().max()).item() or 0
    data = pl.col("_key").cast(pl.Binary).cast(pl.List(pl.UInt8))
    hashes = []
    for base, mod in _HASH_MODULI:
        powers = pl.Series([pow(base, i, mod) for i in range(longest)], dtype=pl.Int64)
        term = (pl.element().cast(pl.Int64) * pl.lit(powers).gather(pl.int_range(pl.len()))) % mod
        hashes.append(data.list.eval(term).list.sum() % mod)
    number = keyed.select((hashes[0] * 2**31 + hashes[1]).alias("_h"))
    digits = [
        ((pl.col("_h") // 16**k) % 16).replace_strict(list(range(16)), list(_HEX), return_dtype=pl.String)
        for k in range(15, -1, -1)
    ]
    return number.select(pl.concat_str(digits).alias("fingerprint")).to_series()


def _require(rule: Rule, frame: pl.DataFrame, columns: Iterable[str], what: str = "frame") -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise RuleInputError(
            f"rule '{rule.name}' (scope {rule.scope}, {rule.kind}): the {what} lacks column(s) {', '.join(missing)}"
        )


def _require_numeric(rule: Rule, frame: pl.DataFrame, column: str, what: str = "frame") -> None:
    dtype = frame.schema[column]
    if not (dtype.is_numeric() or dtype == pl.Boolean):
        raise RuleInputError(f"rule '{rule.name}': column {column} of the {what} is {dtype}, not numeric")


def _compare(value: pl.Expr, op: str, level: float) -> pl.Expr:
    match op:
        case ">":
            return value > level
        case ">=":
            return value >= level
        case "<":
            return value < level
        case _:
            return value <= level


def _level_severity(condition: Threshold | Rate, value: pl.Expr) -> pl.Expr:
    """The worst level ``value`` meets, null if none (or if ``value`` is null)."""
    no = pl.lit(value=False)
    critical = no if condition.critical is None else _compare(value, condition.op, condition.critical)
    warning = no if condition.warning is None else _compare(value, condition.op, condition.warning)
    return (
        pl.when(critical.fill_null(value=False))
        .then(pl.lit("critical"))
        .when(warning.fill_null(value=False))
        .then(pl.lit("warning"))
        .otherwise(pl.lit(None, pl.String))
    )


def _with_previous(rule: Rule, rate: Rate, frame: pl.DataFrame, context: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``_previous``: the entity's ``rate.column`` ``per_minutes`` before each window."""
    keys = [*rule.entity, "window_start"]
    needed = [*keys, rate.column]
    history = pl.concat([context.select(needed), frame.select(needed)], how="vertical_relaxed").unique(
        subset=keys, keep="last", maintain_order=True
    )
    previous = history.select(
        *rule.entity,
        pl.col("window_start") + timedelta(minutes=rate.per_minutes),
        pl.col(rate.column).cast(pl.Float64).alias("_previous"),
    ).cast({k: frame.schema[k] for k in keys})
    return frame.join(previous, on=keys, how="left", maintain_order="left")


def _evaluated(rule: Rule, frame: pl.DataFrame, context: pl.DataFrame | None) -> pl.DataFrame:
    """Every row of ``frame``: entity columns, ``event_at``, ``value``, ``severity`` (null unless held), ``_held``."""
    entity = list(rule.entity)
    event = rule.event_column
    base = frame
    match rule.condition:
        case Threshold() as threshold:
            _require(rule, frame, [*entity, event, threshold.column])
            _require_numeric(rule, frame, threshold.column)
            value = pl.col(threshold.column).cast(pl.Float64)
            severity = _level_severity(threshold, value)
        case Rate() as rate:
            if context is None:
                raise RuleInputError(
                    f"rule '{rule.name}' (rate): needs context, the entities' windows of the {rate.per_minutes} "
                    "minutes before the frame's (an empty frame if there are none)"
                )
            _require(rule, frame, [*entity, event, rate.column])
            _require(rule, context, [*entity, event, rate.column], "context")
            _require_numeric(rule, frame, rate.column)
            _require_numeric(rule, context, rate.column, "context")
            base = _with_previous(rule, rate, frame, context)
            value = (pl.col(rate.column).cast(pl.Float64) - pl.col("_previous")) / rate.per_minutes
            severity = _level_severity(rate, value)
        case StateCondition() as state:
            _require(rule, frame, [*entity, event, "state"])
            value = pl.lit(None, pl.Float64)
            from_state = pl.lit(rule.default_severity)
            if state.severity_from_state:
                from_state = (
                    pl.when(pl.col("state") == "critical")
                    .then(pl.lit("critical"))
                    .when(pl.col("state") == "degraded")
                    .then(pl.lit("warning"))
                    .otherwise(from_state)
                )
            held = pl.col("state").is_in(list(state.in_)).fill_null(value=False)
            severity = pl.when(held).then(from_state).otherwise(pl.lit(None, pl.String))
        case Absent() as absent:
            _require(rule, frame, ["rack_id", "as_of", "last_window_start", "in_contact_expected"])
            silence = pl.col("as_of") - (pl.col("last_window_start") + WINDOW)
            value = (silence.dt.total_seconds(fractional=True) / 60).clip(lower_bound=0.0)
            held = (
                pl.col("in_contact_expected").fill_null(value=False)
                & pl.col("as_of").is_not_null()
                & (pl.col("last_window_start").is_null() | (silence >= timedelta(minutes=absent.for_minutes)))
            )
            severity = pl.when(held).then(pl.lit(rule.default_severity)).otherwise(pl.lit(None, pl.String))
    return base.select(
        *entity,
        pl.col(event).cast(UTC_US).alias("event_at"),
        value.alias("value"),
        severity.alias("severity"),
    ).with_columns(pl.col("severity").is_not_null().alias("_held"))


def _value_text(decimals: int | None) -> pl.Expr:
    """``value`` as text: as polars prints it, or with exactly ``decimals`` decimals."""
    value = pl.col("value")
    if decimals is None:
        return value.cast(pl.String)
    scaled = (value * 10**decimals).round(0).cast(pl.Int64, strict=False)
    sign = pl.when(scaled < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    whole = (scaled.abs() // 10**decimals).cast(pl.String)
    if decimals == 0:
        return pl.concat_str([sign, whole])
    fraction = (scaled.abs() % 10**decimals).cast(pl.String).str.zfill(decimals)
    return pl.concat_str([sign, whole, pl.lit("."), fraction])


def _label_exprs(rule: Rule) -> dict[str, pl.Expr]:
    """Every label of the rule's instances, as String expressions over the evaluated rows."""
    builtin = {
        "rule": pl.lit(rule.name),
        "satellite": pl.col("rack_id").str.split("/").list.first(),
        "rack_id": pl.col("rack_id"),
        "node": pl.col("node").cast(pl.String) if rule.scope == "gpu" else None,
        "gpu": pl.col("gpu").cast(pl.String) if rule.scope == "gpu" else None,
        "severity": pl.col("severity"),
    }
    labels = {name: expr for name, expr in builtin.items() if expr is not None}
    return labels | {name: pl.lit(value) for name, value in rule.labels.items()}


def _json_object(fields: Mapping[str, pl.Expr]) -> pl.Expr:
    if not fields:
        return pl.lit("{}")
    return pl.struct([fields[name].cast(pl.String).alias(name) for name in sorted(fields)]).struct.json_encode()


def _render(template: str, labels: Mapping[str, pl.Expr]) -> pl.Expr:
    pieces = []
    for part in parse_template(template):
        if isinstance(part, Placeholder):
            expr = _value_text(part.decimals) if part.name == "value" else labels[part.name]
            pieces.append(expr.fill_null(_NULL))
        elif part:
            pieces.append(pl.lit(part))
    return pl.concat_str(pieces) if pieces else pl.lit("")


def _default_summary(rule: Rule) -> pl.Expr:
    entity = pl.format("{} node {} gpu {}", "rack_id", "node", "gpu") if rule.scope == "gpu" else pl.col("rack_id")
    value = pl.when(pl.col("value").is_not_null()).then(pl.format(" (value {})", pl.col("value")))
    return pl.concat_str(
        [pl.lit(f"{rule.name} "), pl.col("severity"), pl.lit(" on "), entity, value], ignore_nulls=True
    )


def _finish(rule: Rule, rows: pl.DataFrame, extra: Iterable[pl.Expr] = ()) -> pl.DataFrame:
    """Evaluated rows (held or not, with ``fingerprint``) as ``INSTANCE_SCHEMA`` columns, plus ``extra``."""
    labels = _label_exprs(rule)
    rendered = {name: _render(text, labels) for name, text in rule.annotations.items()}
    summary = rendered.get("summary", _default_summary(rule))
    return rows.select(
        pl.lit(rule.name, pl.String).alias("rule"),
        pl.col("fingerprint"),
        pl.col("severity"),
        pl.col("value").cast(pl.Float64),
        pl.col("event_at"),
        _json_object(labels).alias("labels"),
        _json_object({name: labels[name] for name in rule.group_by}).alias("group"),
        summary.alias("summary"),
        _json_object(rendered).alias("annotations"),
        *extra,
    )


def instances(rule: Rule, frame: pl.DataFrame, context: pl.DataFrame | None = None) -> pl.DataFrame:
    """The entities and windows of ``frame`` in which ``rule``'s condition holds (``INSTANCE_SCHEMA``).

    ``frame``: the rule's scope's frame (module docstring); ``context``: earlier windows of the same
    entities for rate rules (at least ``rule.lookback`` before the frame's; required, possibly empty).
    ``for`` and ``keep_firing_for`` are not applied here (see ``condition_windows``). ``RuleInputError``
    when a column the rule reads is missing or not numeric.
    """
    rows = _evaluated(rule, frame, context).filter(pl.col("_held"))
    return _finish(rule, rows.with_columns(_fingerprints(rule, rows)))


def condition_windows(rule: Rule, frames: pl.DataFrame, context: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per fingerprint, the windows where the condition held, with their run (``RUN_SCHEMA``).

    ``frames``: windows (or, in scope rack_now, successive judgements) of the rule's scope, any number
    per entity, in any order; a repeated ``(entity, event_at)`` counts once (the last row). Adds to the
    instance columns ``run_start`` (the first window of the run), ``held_for`` and ``for_met``
    (``held_for >= rule.for_``), sorted by fingerprint and event time. The module docstring says how the
    lifecycle applies them, with ``keep_firing_for`` and the severities.
    """
    rows = _evaluated(rule, frames, context)
    rows = (
        rows.with_columns(_fingerprints(rule, rows))
        .unique(subset=["fingerprint", "event_at"], keep="last", maintain_order=True)
        .sort("fingerprint", "event_at")
    )
    windowed = rule.scope != "rack_now"
    previous_held = pl.col("_held").shift(1).over("fingerprint").fill_null(value=False)
    step = pl.col("event_at") - pl.col("event_at").shift(1).over("fingerprint")
    contiguous = (step == WINDOW).fill_null(value=False) if windowed else pl.lit(value=True)
    starts = pl.col("_held") & ~(previous_held & contiguous)
    runs = rows.with_columns(starts.cast(pl.Int64).cum_sum().over("fingerprint").alias("_run")).filter(pl.col("_held"))
    run_start = pl.col("event_at").min().over("fingerprint", "_run")
    held_for = pl.col("event_at") - run_start + (WINDOW if windowed else timedelta(0))
    return _finish(
        rule,
        runs,
        [
            run_start.alias("run_start"),
            held_for.cast(pl.Duration("us")).alias("held_for"),
            (held_for >= rule.for_).alias("for_met"),
        ],
    )


def evaluate(
    rules: Iterable[Rule],
    frames: Mapping[Scope, pl.DataFrame],
    context: Mapping[Scope, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """``instances`` of every rule whose scope has a frame in ``frames``, concatenated (``INSTANCE_SCHEMA``).

    Rules of a scope absent from ``frames`` are skipped (rack_now rules are evaluated after ``judge_now``,
    the windowed ones after each batch). ``context``: per scope, earlier windows for rate rules.
    """
    parts = [
        instances(rule, frames[rule.scope], (context or {}).get(rule.scope)) for rule in rules if rule.scope in frames
    ]
    empty = pl.DataFrame(schema=INSTANCE_SCHEMA)
    return pl.concat([empty, *parts], how="vertical") if parts else empty
