"""The health model: per GPU, node and rack window, a state and the reasons behind it.

States are ordered ``ok < degraded < critical``; ``unknown`` means no data to judge (coverage 0), and
is not a severity. Every rule yields a level and, when it fires, a reason such as
``"gpu temp 91.2 C >= critical 90 C"``; a window's state is the worst level of its rules, and its reasons
are all the fired rules' (some rules only note at level ok, e.g. application XIDs). A node is the worst
of its GPUs and a rack the worst of its nodes and its own rules; children that are unknown do not hide
known ones (a parent is unknown only when all of it is), but their reasons are carried, prefixed with
``"node 3: gpu 5: "``. Thresholds live in ``HealthThresholds``; the rules are documented on its fields.

Links: silence is judged against ``processing.passes.expected_contact``. A rack that sends nothing while
no contact is expected (between passes) is ``unknown``, never critical; it is ``degraded`` ("stale")
only when frames should have arrived. Windows are in event time (``window_start`` from ``sampled_at``),
so evaluating them again after playback rewrites history as it happened, while ``fleet_health_now`` with
``expected_contact(..., now=T)`` shows what the ground knew at moment T.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from processing.errors import FrameShapeError

GPU_WINDOW_COLUMNS: dict[str, str] = {
    "rack_id": "rack", "node": "node index", "gpu": "GPU index in the node",
    "window_start": "window start in event time (sampled_at)", "samples": "GPU samples in the window",
    "coverage": "samples / expected samples, 0..1", "temp_max": "max GPU temperature, C",
    "hbm_temp_max": "max HBM temperature, C", "throttled_s_hw_thermal": "seconds with 0x40 set",
    "throttled_s_power_brake": "seconds with 0x80 set", "throttled_s_hw_slowdown": "seconds with 0x08 set",
    "throttled_s_sw_thermal": "seconds with 0x20 set",
    "ecc_dbe_inc": "double-bit ECC increase (counter resets at reboot already handled)",
    "ecc_sbe_inc": "single-bit ECC increase", "row_remap_pending": "bool, any sample had a pending remap",
    "xids": "list[int], distinct XIDs raised in the window",
}  # fmt: skip
RACK_WINDOW_COLUMNS: dict[str, str] = {
    "rack_id": "rack", "window_start": "window start in event time", "coverage": "frames / expected, 0..1",
    "seu_inc": "single-event upsets in the window", "radiator_c_max": "max radiator temperature, C",
    "coolant_outlet_c_max": "max coolant outlet temperature, C", "battery_soc_min": "min state of charge 0..1",
    "in_eclipse_fraction": "fraction of frames in eclipse", "last_frame_at": "latest received_at of the rack",
    "as_of": "moment judged (expected_contact)", "in_contact_expected": "bool (expected_contact)",
    "expected_frame_interval_s": "live frame interval (expected_contact)",
    "predicted_next_contact": "(expected_contact)",
}  # fmt: skip
HEALTH_COLUMNS = ["state", "reasons"]
_LEVEL_NAMES = ("ok", "degraded", "critical")
_XID_CRITICAL = {48: "double-bit ECC", 63: "row remap", 64: "row remap failure", 79: "fell off the bus"}
_XID_DEGRADED = {74: "NVLink"}
_XID_NOTED = {13: "graphics engine exception", 31: "memory page fault", 43: "GPU stopped processing"}
Rule = tuple[pl.Expr, pl.Expr]  # (level 0/1/2, reason or null)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """Every number the health model uses, with its default."""

    gpu_temp_degraded_c: float = 83.0
    """GPU core temperature at or above which a GPU is degraded (near the slowdown temperature)."""
    gpu_temp_critical_c: float = 90.0
    """GPU core temperature at or above which a GPU is critical (at the hardware throttle limit)."""
    hbm_temp_degraded_c: float = 90.0
    """HBM temperature at or above which a GPU is degraded."""
    hbm_temp_critical_c: float = 95.0
    """HBM temperature at or above which a GPU is critical (HBM throttles around 95 C)."""
    throttle_sustained_fraction: float = 0.5
    """Hardware thermal (0x40) or power brake (0x80) throttling for more than this fraction of the observed
    window is critical; any is degraded. HW slowdown (0x08) is degraded; SW thermal (0x20) is only noted."""
    sample_interval_s: float = 1.0
    """Seconds one GPU sample stands for (one frame per second); observed time = samples * this."""
    ecc_sbe_per_hour_degraded: float = 10.0
    """Single-bit ECC errors per observed hour above which a GPU is degraded. Any double-bit increase or
    pending row remap is critical, without a threshold."""
    ecc_sbe_min_errors: int = 10
    """...and only with at least this many in the window: one error in a minute is 60/h, yet healthy HBM
    shows a few corrected errors an hour; a *rising* rate shows as a burst."""
    seu_recent_windows: int = 10
    """The SEU rate judged is that of the window and the minutes before it, this many minutes in all
    (single minutes hold too few upsets to tell a storm from chance)."""
    seu_baseline_windows: int = 60
    """The rack's own norm: its mean SEU rate over this many minutes before the recent ones."""
    seu_baseline_min_windows: int = 5
    """No SEU judgement until the rack has this many minutes with data in the norm's span."""
    seu_baseline_floor: float = 0.1
    """Smallest norm (SEUs per minute), so a quiet rack is not flagged for a handful of upsets."""
    seu_ratio_degraded: float = 10.0
    """Recent SEU rate above this multiple of the rack's norm is degraded."""
    seu_ratio_critical: float = 50.0
    """Recent SEU rate above this multiple of the rack's norm is critical."""
    radiator_degraded_c: float = 30.0
    """Radiator temperature above which a rack is degraded. The fleet's radiators run -20..15 C between
    eclipse and full load; set per rack design."""
    radiator_critical_c: float = 45.0
    """Radiator temperature above which a rack is critical (set per rack design)."""
    coolant_outlet_degraded_c: float = 40.0
    """Coolant outlet temperature above which a rack is degraded (healthy racks stay under ~35 C)."""
    coolant_outlet_critical_c: float = 50.0
    """Coolant outlet temperature above which a rack is critical (set per rack design)."""
    battery_soc_degraded: float = 0.2
    """State of charge below which a rack in eclipse (for any part of the window) is degraded."""
    battery_soc_critical: float = 0.1
    """State of charge below which a rack in eclipse is critical. Low charge in sunlight is not judged."""
    stale_factor: float = 3.0
    """While contact is expected, no frame for more than this many frame intervals is degraded (stale)."""
    stale_min_s: float = 120.0
    """Floor of the staleness limit. Consumer batching is seconds, and the end of a ground pass is only
    known once ``processing.pass_break_s`` (120 s) of silence has passed: a shorter limit flagged every
    rack "stale" for the two minutes after each pass."""


def validate(frame: pl.DataFrame, columns: dict[str, str] | list[str], what: str) -> None:
    """Raise ``FrameShapeError`` naming the ``columns`` that ``frame`` lacks."""
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise FrameShapeError(f"{what} lacks columns {missing}")


def _num(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64).round(1)


def _above(column: str, label: str, degraded: float, critical: float, op: str = ">=") -> Rule:
    value = pl.col(column)
    hit_c, hit_d = (value >= critical, value >= degraded) if op == ">=" else (value > critical, value > degraded)
    level = pl.when(hit_c).then(2).when(hit_d).then(1).otherwise(0)
    reason = (
        pl.when(hit_c)
        .then(pl.format(f"{label} {{}} C {op} critical {critical:g} C", _num(column)))
        .when(hit_d)
        .then(pl.format(f"{label} {{}} C {op} degraded {degraded:g} C", _num(column)))
    )
    return level, reason


def _throttle(column: str, label: str, observed_s: pl.Expr, sustained: float | None) -> Rule:
    seconds = pl.col(column)
    fraction = seconds / observed_s
    level = pl.when(seconds <= 0).then(0).when(fraction > (sustained or 2.0)).then(2).otherwise(1)
    text = pl.format(f"{label} throttling {{}} s ({{}}% of observed window)", _num(column), (fraction * 100).round(0))
    if sustained is None:  # noted only
        level = pl.lit(0)
    return level, pl.when(seconds > 0).then(text)


def _xids(classes: dict[int, str], level: int, label: str) -> Rule:
    hit = pl.col("xids").list.eval(pl.element().filter(pl.element().is_in(list(classes))))
    if not classes:  # the unclassified ones
        known = [*_XID_CRITICAL, *_XID_DEGRADED, *_XID_NOTED]
        hit = pl.col("xids").list.eval(pl.element().filter(~pl.element().is_in(known)))
    found = hit.list.sort().cast(pl.List(pl.String)).list.join(", ")
    fired = hit.list.len() > 0
    return pl.when(fired).then(level).otherwise(0), pl.when(fired).then(pl.format(f"{label} {{}}", found))


def gpu_rules(t: HealthThresholds) -> list[Rule]:
    """The GPU rules, in the order their reasons are listed."""
    observed_s = pl.col("samples").cast(pl.Float64) * t.sample_interval_s
    sbe_per_hour = pl.col("ecc_sbe_inc") * 3600.0 / observed_s
    sbe_rising = (sbe_per_hour > t.ecc_sbe_per_hour_degraded) & (pl.col("ecc_sbe_inc") >= t.ecc_sbe_min_errors)
    return [
        (pl.when(pl.col("ecc_dbe_inc") > 0).then(2).otherwise(0),
         pl.when(pl.col("ecc_dbe_inc") > 0).then(pl.format("ecc double-bit errors +{}", "ecc_dbe_inc"))),
        (pl.when(pl.col("row_remap_pending")).then(2).otherwise(0),
         pl.when(pl.col("row_remap_pending")).then(pl.lit("hbm row remap pending (needs reset)"))),
        _xids(_XID_CRITICAL, 2, "critical xid"),
        _above("temp_max", "gpu temp", t.gpu_temp_degraded_c, t.gpu_temp_critical_c),
        _above("hbm_temp_max", "hbm temp", t.hbm_temp_degraded_c, t.hbm_temp_critical_c),
        _throttle("throttled_s_hw_thermal", "hw thermal", observed_s, t.throttle_sustained_fraction),
        _throttle("throttled_s_power_brake", "power brake", observed_s, t.throttle_sustained_fraction),
        _throttle("throttled_s_hw_slowdown", "hw slowdown", observed_s, 2.0),
        _throttle("throttled_s_sw_thermal", "sw thermal (noted)", observed_s, None),
        (pl.when(sbe_rising).then(1).otherwise(0),
         pl.when(sbe_rising).then(pl.format(
             f"ecc single-bit rate {{}}/h > {t.ecc_sbe_per_hour_degraded:g}/h", sbe_per_hour.round(1)))),
        _xids(_XID_DEGRADED, 1, "nvlink xid"),
        _xids({}, 1, "unclassified xid"),
        _xids(_XID_NOTED, 0, "application xid (noted)"),
    ]  # fmt: skip


def judge(frame: pl.DataFrame, rules: list[Rule], has_data: pl.Expr, no_data_reason: pl.Expr) -> pl.DataFrame:
    """Add ``state`` and ``reasons``: worst rule level, or unknown where ``has_data`` is false."""
    level = pl.max_horizontal([lvl.fill_null(0) for lvl, _ in rules])
    reasons = pl.concat_list([reason for _, reason in rules]).list.drop_nulls()
    known = has_data.fill_null(value=False)
    state = (
        pl.when(~known)
        .then(pl.lit("unknown"))
        .when(level >= 2)
        .then(pl.lit("critical"))
        .when(level == 1)
        .then(pl.lit("degraded"))
        .otherwise(pl.lit("ok"))
    )
    unknown_reasons = pl.concat_list([no_data_reason]).list.drop_nulls()
    return frame.with_columns(
        state.alias("state"),
        pl.when(known).then(reasons).otherwise(unknown_reasons).alias("reasons"),
    )


def gpu_health(gpu_window: pl.DataFrame, thresholds: HealthThresholds | None = None) -> pl.DataFrame:
    """Per GPU window: ``rack_id, node, gpu, window_start, state, reasons`` (see ``GPU_WINDOW_COLUMNS``)."""
    validate(gpu_window, GPU_WINDOW_COLUMNS, "GPU windows")
    has_data = (pl.col("samples") > 0) & (pl.col("coverage") > 0)
    judged = judge(gpu_window, gpu_rules(thresholds or HealthThresholds()), has_data, pl.lit("no samples in window"))
    return judged.select("rack_id", "node", "gpu", "window_start", *HEALTH_COLUMNS)


def worst_of(children: pl.DataFrame, keys: list[str], prefix: pl.Expr) -> pl.DataFrame:
    """Per ``keys``: the worst known child state (unknown if none is known), reasons prefixed by child."""
    rank = pl.col("state").replace_strict({n: r for r, n in enumerate(_LEVEL_NAMES)}, default=None)
    ranked = children.with_columns(rank.alias("rank"), prefix.alias("prefix")).sort(
        *keys,
        "prefix",
        maintain_order=True,  # stable: children with equal prefixes keep their input order
    )
    states = ranked.group_by(keys, maintain_order=True).agg(pl.col("rank").max())
    reasons = (
        ranked.explode("reasons")
        .group_by(keys, maintain_order=True)
        .agg(pl.format("{}{}", "prefix", "reasons").drop_nulls().alias("reasons"))
    )
    name = pl.col("rank").replace_strict(dict(enumerate(_LEVEL_NAMES)), default="unknown", return_dtype=pl.String)
    return (
        states.join(reasons, on=keys, how="left", nulls_equal=True)
        .select(*keys, name.alias("state"), pl.col("reasons").fill_null(pl.lit([], pl.List(pl.String))))
        .sort(keys)
    )


def node_health(gpu_states: pl.DataFrame) -> pl.DataFrame:
    """Per node window, from ``gpu_health``: ``rack_id, node, window_start, state, reasons``."""
    validate(gpu_states, ["rack_id", "node", "gpu", "window_start", *HEALTH_COLUMNS], "GPU health")
    return worst_of(gpu_states, ["rack_id", "node", "window_start"], pl.format("gpu {}: ", "gpu"))


def _silence_rule(t: HealthThresholds) -> tuple[pl.Expr, Rule]:
    """(silent, stale rule): silent past the staleness limit; stale when contact was also expected."""
    interval = pl.col("expected_frame_interval_s").fill_null(t.sample_interval_s)
    limit = pl.max_horizontal(interval * t.stale_factor, pl.lit(t.stale_min_s))
    silence = (pl.col("as_of") - pl.col("last_frame_at")).dt.total_seconds(fractional=True)
    silent = silence.is_null() | (silence > limit)
    stale = pl.col("in_contact_expected").fill_null(value=False) & silent
    reason = pl.format(
        "stale: no frame for {} s while contact expected (limit {} s)", silence.round(0).cast(pl.Int64), limit
    )
    return silent, (pl.when(stale).then(1).otherwise(0), pl.when(stale).then(reason))


def rack_rules(t: HealthThresholds) -> list[Rule]:
    """The rack's own data rules (link rules aside): SEU against its norm, thermal, battery in eclipse."""
    ratio = pl.col("seu_ratio")
    seu_level = pl.when(ratio > t.seu_ratio_critical).then(2).when(ratio > t.seu_ratio_degraded).then(1)
    seu_reason = pl.format(f"seu rate {{}}/min over {t.seu_recent_windows} min = {{}}x the rack's norm {{}}/min",
                           pl.col("seu_recent").round(2), ratio.round(1), pl.col("seu_baseline").round(2))  # fmt: skip
    soc = pl.col("battery_soc_min")
    eclipse = pl.col("in_eclipse_fraction") > 0
    soc_c, soc_d = eclipse & (soc < t.battery_soc_critical), eclipse & (soc < t.battery_soc_degraded)
    soc_text = "battery soc {} in eclipse < {} {:g}"
    return [
        _above("radiator_c_max", "radiator", t.radiator_degraded_c, t.radiator_critical_c, ">"),
        _above("coolant_outlet_c_max", "coolant outlet", t.coolant_outlet_degraded_c, t.coolant_outlet_critical_c, ">"),
        (pl.when(soc_c).then(2).when(soc_d).then(1).otherwise(0),
         pl.when(soc_c).then(pl.format(soc_text.format("{}", "critical", t.battery_soc_critical), soc.round(2)))
         .when(soc_d).then(pl.format(soc_text.format("{}", "degraded", t.battery_soc_degraded), soc.round(2)))),
        (seu_level.otherwise(0), pl.when(seu_level.is_not_null()).then(seu_reason)),
    ]  # fmt: skip


def _with_seu_baseline(racks: pl.DataFrame, t: HealthThresholds) -> pl.DataFrame:
    """``seu_recent`` (SEUs per observed minute over the recent minutes), ``seu_baseline``, ``seu_ratio``.

    Spans are in time, not rows: the recent rate covers the window and the ``seu_recent_windows - 1``
    minutes before it, the norm the ``seu_baseline_windows`` minutes before those, whichever of them have
    data (missing minutes are simply absent). So the result depends only on the windows in those spans,
    never on which other windows happen to be in the same frame. Rates are per observed minute
    (``coverage`` minutes of frames), so gaps do not dilute them.
    """
    seu = pl.col("seu_inc").fill_null(0).cast(pl.Float64)
    seen = pl.when(pl.col("seu_inc").is_not_null()).then(pl.col("coverage")).otherwise(0.0)
    has_data = (seen > 0).cast(pl.Float64)
    recent_span, whole_span = f"{t.seu_recent_windows}m", f"{t.seu_recent_windows + t.seu_baseline_windows}m"

    def by_time(value: pl.Expr, span: str) -> pl.Expr:
        return value.rolling_sum_by("window_start", window_size=span).over("rack_id")

    recent = by_time(seu, recent_span) / by_time(seen, recent_span)
    base_seu = by_time(seu, whole_span) - by_time(seu, recent_span)
    base_seen = by_time(seen, whole_span) - by_time(seen, recent_span)
    base_windows = by_time(has_data, whole_span) - by_time(has_data, recent_span)
    trailing = pl.when((base_windows >= t.seu_baseline_min_windows) & (base_seen > 0)).then(base_seu / base_seen)
    return (
        racks.sort("rack_id", "window_start")
        .with_columns(recent.alias("seu_recent"), trailing.alias("_trailing"))
        .with_columns(pl.max_horizontal(pl.col("_trailing"), pl.lit(t.seu_baseline_floor)).alias("seu_baseline"))
        .with_columns(
            pl.when(pl.col("_trailing").is_not_null() & (pl.col("coverage") > 0))
            .then(pl.col("seu_recent") / pl.col("seu_baseline"))
            .alias("seu_ratio")
        )
        .drop("_trailing")
    )


def gpu_part(nodes: pl.DataFrame) -> pl.DataFrame:
    """Per rack window, the worst of its nodes: ``rack_id, window_start, state, reasons`` (prefixed)."""
    validate(nodes, ["rack_id", "node", "window_start", *HEALTH_COLUMNS], "node health")
    return worst_of(nodes, ["rack_id", "window_start"], pl.format("node {}: ", "node"))


def rack_health(
    rack_window: pl.DataFrame, nodes: pl.DataFrame, thresholds: HealthThresholds | None = None
) -> pl.DataFrame:
    """Per rack window: ``rack_id, window_start, state, reasons``, worst of its rules and its nodes.

    ``rack_window`` has ``RACK_WINDOW_COLUMNS`` (all of a rack's windows, oldest first, so the SEU norm
    can be learnt); ``nodes`` is ``node_health``'s output. A window without frames is unknown while no
    contact is expected (predicted loss of signal), degraded when frames should have arrived (stale).
    """
    return rack_health_from_parts(rack_window, gpu_part(nodes), thresholds)


def rack_health_from_parts(
    rack_window: pl.DataFrame, gpus: pl.DataFrame, thresholds: HealthThresholds | None = None
) -> pl.DataFrame:
    """``rack_health`` with the nodes already folded by ``gpu_part`` (as the daemon stores them)."""
    t = thresholds or HealthThresholds()
    validate(rack_window, RACK_WINDOW_COLUMNS, "rack windows")
    validate(gpus, ["rack_id", "window_start", *HEALTH_COLUMNS], "GPU part of rack health")
    _, stale = _silence_rule(t)
    has_data = pl.col("coverage") > 0
    rules = [(pl.when(has_data).then(lvl), pl.when(has_data).then(why)) for lvl, why in rack_rules(t)]
    los = pl.format("no frames: predicted loss of signal, next contact ~{}", pl.col("predicted_next_contact"))
    no_data = pl.when(~pl.col("in_contact_expected").fill_null(value=False)).then(los).otherwise(pl.lit("no frames"))
    own = judge(_with_seu_baseline(rack_window, t), [*rules, stale], has_data | (stale[0] == 1), no_data)
    own = own.select("rack_id", "window_start", *HEALTH_COLUMNS, pl.lit("").alias("prefix"))
    children = gpus.select("rack_id", "window_start", *HEALTH_COLUMNS, pl.lit("").alias("prefix"))
    return worst_of(pl.concat([own, children]), ["rack_id", "window_start"], pl.col("prefix"))


def event_time_link() -> list[pl.Expr]:
    """Link columns for judging windows as history (event time): silence is not judged there."""
    utc = pl.Datetime("us", "UTC")
    return [
        pl.lit(None, utc).alias("as_of"),
        pl.lit(None, utc).alias("last_frame_at"),
        pl.lit(value=False).alias("in_contact_expected"),
        pl.lit(None, pl.Float64).alias("expected_frame_interval_s"),
        pl.lit(None, utc).alias("predicted_next_contact"),
    ]


NOW_COLUMNS = [
    "rack_id", "as_of", "state", "reasons", "last_known_state", "last_window_start", "last_frame_at",
    "in_contact_expected", "predicted_next_contact",
]  # fmt: skip


def judge_now(latest: pl.DataFrame, contact: pl.DataFrame, thresholds: HealthThresholds | None = None) -> pl.DataFrame:
    """What the ground knows at ``contact``'s ``as_of``, from each rack's latest judged window.

    ``latest``: ``rack_id, window_start, state, reasons`` (the newest window of each rack in event time);
    ``contact``: ``processing.passes.contact_at`` or ``expected_contact`` at the moment judged. Returns
    ``NOW_COLUMNS``, one row per rack in both. Silent past the staleness limit while contact is expected:
    at least ``degraded`` with a ``stale`` reason. Silent during a predicted loss of signal: ``unknown``,
    never worse, with the last known state kept in ``last_known_state`` and its reasons prefixed
    ``"last known: "``, so a critical GPU is not lost while the rack is out of sight.
    """
    t = thresholds or HealthThresholds()
    validate(latest, ["rack_id", "window_start", *HEALTH_COLUMNS], "latest rack windows")
    link = ["as_of", "in_contact_expected", "expected_frame_interval_s", "predicted_next_contact", "last_frame_at"]
    validate(contact, ["rack_id", *link], "expected contact")
    silent, (stale_level, stale_reason) = _silence_rule(t)
    expected = pl.col("in_contact_expected").fill_null(value=False)
    los = ~expected & silent
    los_reason = pl.format(
        "predicted loss of signal since {}, next contact ~{}", "last_frame_at", "predicted_next_contact"
    )
    known = pl.col("reasons").list.eval(pl.lit("last known: ") + pl.element())
    worse_for_stale = pl.col("state").is_in(["ok", "unknown"]) & (stale_level == 1)
    return (
        latest.select("rack_id", "window_start", *HEALTH_COLUMNS)
        .join(contact.select("rack_id", *link), on="rack_id")
        .with_columns(pl.col("state").alias("last_known_state"), pl.col("window_start").alias("last_window_start"))
        .with_columns(
            pl.when(los)
            .then(pl.lit("unknown"))
            .when(worse_for_stale)
            .then(pl.lit("degraded"))
            .otherwise(pl.col("state"))
            .alias("state"),
            pl.when(los)
            .then(pl.concat_list(los_reason, known))
            .when(stale_level == 1)
            .then(pl.concat_list(stale_reason, pl.col("reasons")))
            .otherwise(pl.col("reasons"))
            .alias("reasons"),
        )
        .select(NOW_COLUMNS)
        .sort("rack_id")
    )


def fleet_health_now(
    gpu_windows: pl.DataFrame,
    rack_windows: pl.DataFrame,
    contact: pl.DataFrame,
    thresholds: HealthThresholds | None = None,
) -> pl.DataFrame:
    """``judge_now`` from full window tables: one row per rack with windows (see ``judge_now``)."""
    t = thresholds or HealthThresholds()
    link = ["as_of", "in_contact_expected", "expected_frame_interval_s", "predicted_next_contact", "last_frame_at"]
    validate(contact, ["rack_id", *link], "expected contact")
    windows = rack_windows.drop(link, strict=False).with_columns(event_time_link())
    racks = rack_health(windows, node_health(gpu_health(gpu_windows, t)), t)
    latest = racks.sort("window_start").group_by("rack_id").last()
    return judge_now(latest, contact, t)
