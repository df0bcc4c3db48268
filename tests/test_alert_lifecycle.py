"""The alert lifecycle on small hand-built windows: debounce, damping, severities, idempotency, restarts,
grouping, acks and shelves, and the two times. Every expected value is computed by hand."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import polars as pl
import pytest

from alerting.evaluate import condition_windows, fingerprint
from alerting.grouping import group_notifications
from alerting.lifecycle import Step, advance
from alerting.observe import CLEAR_SCHEMA, clear_windows, observe
from alerting.payload import alertmanager_body
from alerting.rules.loading import parse_rules
from alerting.rules.rule import Rule
from alerting.state import STATE_SCHEMA, STATE_SELECT, TRANSITION_SCHEMA, state_from_rows, state_rows
from alerting.suppression import acknowledge, shelve, suppressed
from storage.alert_schema import STATE_DDL

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
MIN = timedelta(minutes=1)
LAG = timedelta(seconds=20)
"""How long after a window's end the ground evaluates it, live."""
GPU_SCHEMA = {
    "rack_id": pl.String(),
    "node": pl.Int32(),
    "gpu": pl.Int32(),
    "window_start": pl.Datetime("us", "UTC"),
    "temp_max": pl.Float64(),
}
EMPTY = pl.DataFrame(schema=STATE_SCHEMA)


def gpu_rule(timing: str = "for: 2m, keep_firing_for: 5m") -> Rule:
    text = f"""
        rules:
          - {{name: gpu_temp, scope: gpu, threshold: {{column: temp_max, op: ">=", warning: 83, critical: 90}},
             {timing}}}
    """
    return parse_rules(textwrap.dedent(text), "test.yaml").rules[0]


def windows(*temps: tuple[int, float], rack_id: str = "sat-0001/rack-1", node: int = 0, gpu: int = 0) -> pl.DataFrame:
    """One GPU's windows: ``(minute after T, temp_max)``."""
    rows = [(rack_id, node, gpu, T + minute * MIN, temp) for minute, temp in temps]
    return pl.DataFrame(rows, schema=GPU_SCHEMA, orient="row")


def run(rule: Rule, state: pl.DataFrame, frame: pl.DataFrame, as_of: datetime | None = None) -> Step:
    """Evaluates ``frame`` live: at the end of its newest window plus ``LAG`` unless ``as_of`` is given."""
    held, clear = observe([rule], {"gpu": frame})
    return advance(state, held, clear, as_of or live(frame), [rule])


def live(frame: pl.DataFrame) -> datetime:
    """When the ground evaluates ``frame`` live: the end of its newest window plus ``LAG``."""
    newest = frame["window_start"].max()
    assert isinstance(newest, datetime)
    return newest + MIN + LAG


def replay(rule: Rule, *temps: tuple[int, float]) -> list[Step]:
    """Evaluates one window at a time, threading the state."""
    steps, state = [], EMPTY
    for temp in temps:
        step = run(rule, state, windows(temp))
        steps.append(step)
        state = step.state
    return steps


def statuses(step: Step) -> list[tuple[str, str, datetime]]:
    return step.transitions.select("status", "severity", "event_at").rows()


FP = fingerprint("gpu_temp", "sat-0001/rack-1", 0, 0)


# ---- for, keep_firing_for, severities ------------------------------------------------------------------


def test_for_debounces_pending_then_fires_once() -> None:
    rule = gpu_rule()
    first, second, third = replay(rule, (0, 85.0), (1, 86.0), (2, 87.0))
    assert first.transitions.is_empty()
    assert first.state.select("fingerprint", "status", "started_at", "fired_at").rows() == [(FP, "pending", T, None)]
    assert statuses(second) == [("firing", "warning", T + MIN)]  # held 2 minutes at the end of minute 1
    assert second.state.select("status", "started_at", "fired_at", "last_held_at").rows() == [
        ("firing", T, T + MIN, T + MIN)
    ]
    assert third.transitions.is_empty()
    assert third.state["last_held_at"].to_list() == [T + 2 * MIN]
    # The same run in one batch fires at the same window.
    assert statuses(run(rule, EMPTY, windows((0, 85.0), (1, 86.0)))) == [("firing", "warning", T + MIN)]


def test_a_pending_alert_whose_condition_stops_disappears_silently() -> None:
    rule = gpu_rule()
    pending, stopped = replay(rule, (0, 85.0), (1, 70.0))
    assert pending.state["status"].to_list() == ["pending"]
    assert stopped.transitions.is_empty()
    assert stopped.state.is_empty()
    # A missing minute ends the run too: minute 2 starts a new one, which fires at minute 3.
    gap = replay(rule, (0, 85.0), (2, 85.0), (3, 85.0))
    assert gap[1].state.select("status", "started_at").rows() == [("pending", T + 2 * MIN)]
    assert statuses(gap[2]) == [("firing", "warning", T + 3 * MIN)]


def test_keep_firing_for_damps_flapping_and_resolves_once() -> None:
    rule = gpu_rule()
    temps = [(0, 85.0), (1, 85.0), (2, 70.0), (3, 85.0), *((m, 70.0) for m in range(4, 11))]
    steps = replay(rule, *temps)
    made = [(m, row) for (m, _), step in zip(temps, steps, strict=True) for row in statuses(step)]
    # Fires at minute 1; the dip at minute 2 does not resolve it; minute 3 holds again (no new `for`);
    # it resolves at the first clear window at or after 3 + 1 + 5 = minute 9, and only then.
    assert made == [(1, ("firing", "warning", T + MIN)), (9, ("resolved", "warning", T + 9 * MIN))]
    assert steps[8].state["status"].to_list() == ["firing"]
    assert steps[9].state.is_empty()
    resolved = steps[9].transitions.row(0, named=True)
    assert resolved["ends_at"] == T + 9 * MIN
    assert resolved["started_at"] == T


def test_without_keep_firing_for_the_first_clear_window_resolves() -> None:
    steps = replay(gpu_rule("for: 0"), (0, 85.0), (1, 70.0))
    assert statuses(steps[0]) == [("firing", "warning", T)]
    assert statuses(steps[1]) == [("resolved", "warning", T + MIN)]


def test_escalation_is_immediate_and_de_escalation_damped() -> None:
    rule = gpu_rule("for: 0, keep_firing_for: 5m")
    temps = [(0, 85.0), (1, 91.0), *((m, 85.0) for m in range(2, 9))]
    steps = replay(rule, *temps)
    made = [(m, row) for (m, _), step in zip(temps, steps, strict=True) for row in statuses(step)]
    # Critical at minute 1 counts until a held window at or after 1 + 1 + 5 = minute 7.
    assert made == [
        (0, ("firing", "warning", T)),
        (1, ("updated", "critical", T + MIN)),
        (7, ("updated", "warning", T + 7 * MIN)),
    ]
    assert steps[1].transitions["fingerprint"].to_list() == [FP]
    assert json.loads(steps[1].transitions["labels"][0])["severity"] == "critical"
    assert steps[6].state.select("severity", "value").rows() == [("critical", 91.0)]  # the critical window's
    assert steps[7].state.select("severity", "value").rows() == [("warning", 85.0)]
    assert steps[6].state["fired_at"].to_list() == [T]  # still the same alert


def test_a_warning_turning_critical_while_pending_does_not_wait_for_again() -> None:
    steps = replay(gpu_rule(), (0, 85.0), (1, 95.0))
    assert statuses(steps[1]) == [("firing", "critical", T + MIN)]


def test_rack_now_judgements_resolve_at_their_as_of_plus_keep_firing_for() -> None:
    text = "rules:\n  - {name: down, scope: rack_now, state: {in: [critical]}, keep_firing_for: 2m}\n"
    rule = parse_rules(text).rules[0]
    schema = {"rack_id": pl.String(), "as_of": pl.Datetime("us", "UTC"), "state": pl.String()}
    state, made = EMPTY, []
    for minute, health in [(0, "critical"), (1, "ok"), (2, "ok")]:
        frame = pl.DataFrame([("sat-0001/rack-1", T + minute * MIN, health)], schema=schema, orient="row")
        held, clear = observe([rule], {"rack_now": frame})
        step = advance(state, held, clear, T + minute * MIN, [rule])
        made += statuses(step)
        state = step.state
    assert made == [("firing", "warning", T), ("resolved", "warning", T + 2 * MIN)]  # T + 0 + 2m


# ---- Late data, restarts ------------------------------------------------------------------------------------


def test_evaluating_the_same_windows_again_is_idempotent() -> None:
    rule = gpu_rule()
    frame = windows((0, 85.0), (1, 86.0))
    first = run(rule, EMPTY, frame)
    again = run(rule, first.state, frame)
    assert statuses(first) == [("firing", "warning", T + MIN)]
    assert again.transitions.is_empty()
    assert again.state.equals(first.state)
    # A late recompute of minutes 0-2 only adds minute 2.
    wider = run(rule, again.state, windows((0, 85.0), (1, 86.0), (2, 87.0)))
    assert wider.transitions.is_empty()
    assert wider.state["last_held_at"].to_list() == [T + 2 * MIN]


def test_a_run_split_over_evaluations_keeps_its_start_from_late_windows() -> None:
    rule = gpu_rule("for: 3m")
    first = run(rule, EMPTY, windows((2, 85.0)))
    assert first.state["started_at"].to_list() == [T + 2 * MIN]
    # Late frames: minutes 0-3 recomputed, the run began at minute 0, so `for` is met at minute 3.
    late = run(rule, first.state, windows((0, 85.0), (1, 85.0), (2, 85.0), (3, 85.0)))
    assert statuses(late) == [("firing", "warning", T + 3 * MIN)]
    assert late.state["started_at"].to_list() == [T]


def test_the_state_survives_a_restart_through_duckdb_without_re_firing() -> None:
    rule = gpu_rule()
    fired = run(rule, EMPTY, windows((0, 85.0), (1, 91.0)))
    state = acknowledge(fired.state, FP, T + timedelta(hours=1))
    con = duckdb.connect(":memory:")
    try:
        con.execute(STATE_DDL)
        marks = ", ".join("?" for _ in STATE_SCHEMA)
        con.executemany(f"INSERT INTO alert_state VALUES ({marks})", state_rows(state))
        con.execute("SET TimeZone = 'Asia/Tokyo'")  # TIMESTAMPTZ comes back in the session's zone
        restored = state_from_rows(con.execute(STATE_SELECT).fetchall())
    finally:
        con.close()
    assert restored.schema == pl.Schema(STATE_SCHEMA)
    assert restored.equals(state)
    for frame in (windows((0, 85.0), (1, 91.0), (2, 91.0)), windows((3, 70.0)), windows((8, 70.0))):
        expected, got = run(rule, state, frame), run(rule, restored, frame)
        assert got.transitions.equals(expected.transitions)
        assert got.state.equals(expected.state)
    assert run(rule, restored, windows((2, 91.0))).transitions.is_empty()  # no re-firing
    assert statuses(run(rule, restored, windows((8, 70.0)))) == [("resolved", "critical", T + 8 * MIN)]


# ---- Grouping ----------------------------------------------------------------------------------------------


def sixty_four(rack_id: str, temp: float = 95.0) -> pl.DataFrame:
    return pl.concat([windows((0, temp), rack_id=rack_id, node=n, gpu=g) for n in range(8) for g in range(8)])


def test_a_satellite_losing_its_cooling_is_one_notification() -> None:
    rule = gpu_rule("for: 0")
    step = run(rule, EMPTY, sixty_four("sat-0001/rack-1"))
    assert step.transitions.height == 64
    (note,) = group_notifications(step.transitions, lambda labels: f"ops-{labels['severity']}")
    assert (note.status, note.receiver, note.group_labels) == (
        "firing",
        "ops-critical",
        {"rule": "gpu_temp", "satellite": "sat-0001"},
    )
    assert note.group_key == 'ops-critical:{"rule":"gpu_temp","satellite":"sat-0001"}'
    assert len(note.alerts) == 64
    expected = {fingerprint("gpu_temp", "sat-0001/rack-1", n, g) for n in range(8) for g in range(8)}
    assert {item.fingerprint for item in note.alerts} == expected
    (item,) = (item for item in note.alerts if item.fingerprint == FP)
    assert (item.starts_at, item.event_at, item.learned_at, item.playback) == (T, T, T + MIN + LAG, False)
    assert item.labels["node"] == "0"
    assert item.ends_at is None

    two = sixty_four("sat-0001/rack-1").vstack(sixty_four("sat-0002/rack-1"))
    notes = group_notifications(run(rule, EMPTY, two).transitions, lambda _: "ops")
    assert [(n.group_labels["satellite"], len(n.alerts)) for n in notes] == [("sat-0001", 64), ("sat-0002", 64)]


def test_an_alert_firing_and_resolving_in_one_evaluation_ends_resolved() -> None:
    rule = gpu_rule("for: 0")
    step = run(rule, EMPTY, windows((0, 95.0), (1, 70.0)), as_of=T + timedelta(hours=3))
    assert statuses(step) == [("firing", "critical", T), ("resolved", "critical", T + MIN)]
    assert step.state.is_empty()
    notes = group_notifications(step.transitions, lambda _: "ops")
    assert [n.status for n in notes] == ["firing", "resolved"]  # in this order: it ends resolved
    assert notes[0].group_key == notes[1].group_key
    assert notes[0].alerts[0].playback
    assert notes[1].alerts[0].ends_at == T + MIN
    delivery = suppressed(step.transitions, step.state, T + timedelta(hours=3))
    assert delivery.notify.select("status").to_series().to_list() == ["firing", "resolved"]
    assert delivery.held_back.is_empty()


# ---- Acks and shelves ---------------------------------------------------------------------------------------


def deliver(rule: Rule, state: pl.DataFrame, frame: pl.DataFrame, as_of: datetime | None = None) -> tuple[Any, ...]:
    """One evaluation through ``suppressed``: (notified rows, held-back rows, state to store)."""
    when = as_of or live(frame)
    step = run(rule, state, frame, when)
    delivery = suppressed(step.transitions, step.state, when)
    rows = ["fingerprint", "status", "severity"]
    return delivery.notify.select(rows).rows(), delivery.held_back.select(rows).rows(), delivery.state


def test_an_acknowledged_alert_is_quiet_until_the_ack_expires_then_notified_once() -> None:
    rule = gpu_rule("for: 0")
    other = fingerprint("gpu_temp", "sat-0001/rack-1", 0, 1)
    both = [windows((0, 85.0)), windows((0, 85.0), gpu=1)]
    notified, held_back, state = deliver(rule, EMPTY, pl.concat(both))
    assert notified == [(FP, "firing", "warning"), (other, "firing", "warning")]
    assert state["notified"].to_list() == [True, True]
    state = acknowledge(state, FP, T + 10 * MIN)
    escalate = pl.concat([windows((1, 95.0)), windows((1, 95.0), gpu=1)])
    notified, held_back, state = deliver(rule, state, escalate, T + 2 * MIN)
    assert notified == [(other, "updated", "critical")]
    assert held_back == [(FP, "updated", "critical")]
    notified, held_back, state = deliver(rule, state, windows((8, 95.0)), T + 9 * MIN)
    assert (notified, held_back) == ([], [])
    # At expiry, once: still firing, with its current severity and its original times.
    notified, held_back, state = deliver(rule, state, windows((9, 95.0)), T + 10 * MIN)
    assert notified == [(FP, "firing", "critical")]
    assert state.filter(pl.col("fingerprint") == FP)["acked_until"].to_list() == [None]
    notified, held_back, state = deliver(rule, state, windows((10, 95.0)), T + 11 * MIN)
    assert (notified, held_back) == ([], [])
    # A notified alert resolving while acknowledged is notified resolved: its incident closes.
    state = acknowledge(state, FP, T + timedelta(hours=1))
    notified, held_back, state = deliver(rule, state, windows((11, 70.0)), T + 12 * MIN)
    assert notified == [(FP, "resolved", "critical")]


def test_shelving_by_labels_hides_alerts_until_it_expires() -> None:
    rule = gpu_rule("for: 2m")  # pending first, so that it can be shelved before it fires
    step = run(rule, EMPTY, pl.concat([windows((0, 85.0)), windows((0, 85.0), rack_id="sat-0002/rack-1")]))
    state = shelve(step.state, {"satellite": "sat-0001", "rule": "gpu_temp"}, T + 5 * MIN)
    assert state.select("labels", "shelved_until").filter(pl.col("shelved_until").is_not_null()).height == 1
    notified, held_back, state = deliver(rule, state, windows((1, 85.0)), T + 2 * MIN)
    assert notified == []
    assert held_back == [(FP, "firing", "warning")]
    assert state["notified"].to_list() == [False, False]
    notified, held_back, state = deliver(rule, state, windows((4, 85.0)), T + 5 * MIN)
    assert notified == [(FP, "firing", "warning")]  # the shelve expired: notified once
    assert state.filter(pl.col("fingerprint") == FP).select("shelved_until", "notified").rows() == [(None, True)]
    with pytest.raises(KeyError, match="no live alert"):
        shelve(state, {"satellite": "sat-0009"}, T + 5 * MIN)
    with pytest.raises(KeyError):
        acknowledge(state, "0" * 16, None)


def test_an_alert_that_fires_and_resolves_while_shelved_stays_silent() -> None:
    rule = gpu_rule("for: 2m")
    state = shelve(run(rule, EMPTY, windows((0, 85.0))).state, FP, T + timedelta(hours=1))
    notified, held_back, state = deliver(rule, state, windows((1, 85.0), (2, 70.0)), T + 3 * MIN)
    assert notified == []
    assert held_back == [(FP, "firing", "warning"), (FP, "resolved", "warning")]
    assert state.is_empty()


# ---- Two times ---------------------------------------------------------------------------------------------


def test_alerts_carry_event_and_learned_times_and_playback_is_marked() -> None:
    rule = gpu_rule("for: 0")
    live = run(rule, EMPTY, windows((0, 91.0)), as_of=T + MIN + LAG)
    assert live.transitions.select("event_at", "learned_at", "playback").rows() == [(T, T + MIN + LAG, False)]
    assert live.state.select("event_at", "learned_at", "playback").rows() == [(T, T + MIN + LAG, False)]
    old = run(rule, EMPTY, windows((0, 91.0)), as_of=T + timedelta(hours=3))
    assert old.transitions.select("event_at", "learned_at", "playback").rows() == [(T, T + timedelta(hours=3), True)]
    (note,) = group_notifications(old.transitions, lambda _: "playback-archive")
    body = alertmanager_body(note, "https://orbitwatch.example")
    alerts = body["alerts"]
    assert isinstance(alerts, list)
    assert alerts[0]["annotations"]["playback"] == "true"
    assert alerts[0]["annotations"]["event_time"] == "2026-03-01T12:00:00Z"
    # The threshold is a parameter: ten minutes late is live by default, playback with a 5-minute one.
    held, clear = observe([rule], {"gpu": windows((0, 91.0))})
    late = T + 10 * MIN
    assert advance(EMPTY, held, clear, late, [rule]).transitions["playback"].to_list() == [False]
    fast = advance(EMPTY, held, clear, late, [rule], playback_after=timedelta(minutes=5))
    assert fast.transitions["playback"].to_list() == [True]


# ---- Inputs ------------------------------------------------------------------------------------------------


def test_clear_windows_are_the_evaluated_windows_where_the_condition_did_not_hold() -> None:
    rule = gpu_rule()
    frame = pl.concat([windows((0, 85.0), (1, 70.0), (2, 70.0)), windows((0, 60.0), gpu=1)])
    clear = clear_windows(rule, frame.vstack(windows((1, 70.0))))  # a repeated window counts once
    assert clear.schema == pl.Schema(CLEAR_SCHEMA)
    other = fingerprint("gpu_temp", "sat-0001/rack-1", 0, 1)
    assert sorted(clear.rows()) == sorted(
        [("gpu_temp", FP, T + MIN), ("gpu_temp", FP, T + 2 * MIN), ("gpu_temp", other, T)]
    )
    assert condition_windows(rule, frame)["fingerprint"].to_list() == [FP]
    held, both = observe([rule], {"gpu": frame, "rack": pl.DataFrame()})
    assert both.sort("fingerprint", "event_at").equals(clear.sort("fingerprint", "event_at"))
    assert held.height == 1


def test_advance_refuses_windows_of_rules_it_was_not_given() -> None:
    rule = gpu_rule()
    held, clear = observe([rule], {"gpu": windows((0, 85.0))})
    with pytest.raises(ValueError, match="no rule given for gpu_temp"):
        advance(EMPTY, held, clear, T, [])
    with pytest.raises(ValueError, match="lacks column"):
        advance(EMPTY.drop("status"), held, clear, T, [rule])
    with pytest.raises(ValueError, match="timezone-aware"):
        advance(EMPTY, held, clear, T.replace(tzinfo=None), [rule])
    assert advance(EMPTY, held, clear, T, [rule]).transitions.schema == pl.Schema(TRANSITION_SCHEMA)
