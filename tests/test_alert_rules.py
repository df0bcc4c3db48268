"""Alert rules: parsing and validation of rules files, and evaluation on small hand-built windows."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import ValidationError

from alerting.errors import AlertingError, DeliveryError, RuleInputError, RulesError
from alerting.evaluate import (
    INSTANCE_SCHEMA,
    RUN_SCHEMA,
    condition_windows,
    evaluate,
    fingerprint,
    instances,
)
from alerting.rules.loading import load_rules, parse_rules
from alerting.rules.rule import Rule
from alerting.rules.ruleset import RuleSet
from alerting.rules.vocabulary import parse_duration
from processing.health import NOW_COLUMNS, judge_now

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "alerts" / "rules.example.yaml"
T = datetime(2026, 3, 1, 12, tzinfo=UTC)
MIN = timedelta(minutes=1)


def rules(text: str) -> RuleSet:
    return parse_rules(textwrap.dedent(text), "test.yaml")


def one_rule(text: str) -> Rule:
    return rules(text).rules[0]


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(RulesError) as caught:
        rules(text)
    return caught.value.problems


def gpu_windows(*rows: dict[str, Any]) -> pl.DataFrame:
    """GPU windows with the dtypes of ``compute_windows(...).gpu`` for the columns the tests use."""
    base: dict[str, Any] = {
        "rack_id": "sat-0001/rack-1", "node": 0, "gpu": 0, "window_start": T, "temp_max": 70.0, "hbm_temp_max": 80.0,
        "ecc_dbe_inc": 0, "state": "ok",
    }  # fmt: skip
    return pl.DataFrame(
        [base | row for row in rows],
        schema_overrides={"node": pl.Int32, "gpu": pl.Int32, "window_start": pl.Datetime("us", "UTC")},
    )


def rack_windows(*rows: dict[str, Any]) -> pl.DataFrame:
    base: dict[str, Any] = {
        "rack_id": "sat-0001/rack-1", "window_start": T, "radiator_c_max": 5.0, "battery_soc_min": 0.8,
        "coolant_outlet_c_max": 30.0, "seu_inc": 0, "state": "ok",
    }  # fmt: skip
    return pl.DataFrame([base | row for row in rows], schema_overrides={"window_start": pl.Datetime("us", "UTC")})


def now_rows(*rows: dict[str, Any]) -> pl.DataFrame:
    """``fleet_health_now`` rows: exactly ``NOW_COLUMNS``, so a renamed column breaks the test."""
    utc = pl.Datetime("us", "UTC")
    base: dict[str, Any] = {
        "rack_id": "sat-0001/rack-1", "as_of": T, "state": "ok", "reasons": [], "last_known_state": "ok",
        "last_window_start": T - MIN, "last_frame_at": T - timedelta(seconds=1), "in_contact_expected": True,
        "predicted_next_contact": None,
    }  # fmt: skip
    schema = {"as_of": utc, "last_window_start": utc, "last_frame_at": utc, "predicted_next_contact": utc}
    frame = pl.DataFrame([base | row for row in rows], schema_overrides=schema | {"reasons": pl.List(pl.String)})
    assert frame.columns == NOW_COLUMNS
    return frame


GPU_TEMP = """
    rules:
      - name: gpu_temp
        scope: gpu
        threshold: {column: temp_max, op: ">=", warning: 83, critical: 90}
        labels: {team: compute}
        annotations:
          summary: "{rack_id} node {node} gpu {gpu}: {value:.1f} C ({severity}, {team})"
"""


# ---- Parsing ------------------------------------------------------------------------------------


def test_the_example_file_parses_and_routes_critical_alerts_to_its_webhook() -> None:
    ruleset = load_rules(EXAMPLE)
    kinds = {rule.name: (rule.scope, rule.kind) for rule in ruleset.rules}
    assert kinds["gpu_temperature"] == ("gpu", "threshold")
    assert kinds["gpu_double_bit_ecc"] == ("gpu", "threshold")
    assert kinds["rack_health_critical"] == ("rack_now", "state")
    assert kinds["radiator_temperature"] == ("rack", "threshold")
    assert kinds["radiator_heating"] == ("rack", "rate")
    assert kinds["seu_burst"] == ("rack", "threshold")
    assert kinds["rack_absent"] == ("rack_now", "absent")
    assert ruleset.rule("radiator_temperature").group_by == ["rule", "satellite"]
    assert ruleset.rule("radiator_heating").lookback == timedelta(minutes=5)
    assert [hook.kind for hook in ruleset.hooks] == ["webhook"]
    assert [hook.name for hook in ruleset.hooks_for({"severity": "critical", "team": "compute"})] == ["ops_webhook"]
    assert ruleset.hooks_for({"severity": "warning", "team": "compute"}) == []


def test_a_minimal_rule_gets_the_documented_defaults() -> None:
    rule = one_rule(
        """
        rules:
          - name: rack_down
            scope: rack_now
            state: {in: [critical]}
        """
    )
    assert rule.for_ == timedelta(0)
    assert rule.keep_firing_for == timedelta(0)
    assert rule.group_by == ["rule", "satellite"]
    assert rule.default_severity == "warning"
    assert rule.labels == {}
    assert rule.lookback == timedelta(0)


def test_rules_are_frozen() -> None:
    rule = one_rule(GPU_TEMP)
    with pytest.raises(ValidationError):
        rule.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("2m", timedelta(minutes=2)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("0", timedelta(0)),
        (0, timedelta(0)),
    ],
)
def test_durations(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["2 minutes", "5", 5, "-1m", "1.5m", "", "m", True])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


MALFORMED = [
    pytest.param(
        """
        - {name: gpu_temp, scope: gpu, threshold: {column: temp_max, op: ">", warning: 83}}
        - {name: gpu_temp, scope: gpu, threshold: {column: hbm_temp_max, op: ">", warning: 90}}
        """,
        "rule 'gpu_temp' (#2): name: duplicate of rule #1",
        id="duplicate-names",
    ),
    pytest.param(
        "- {name: hot, scope: node, threshold: {column: temp_max, op: '>', warning: 83}}",
        "rule 'hot' (#1): scope: Input should be 'gpu', 'rack' or 'rack_now' (got 'node')",
        id="unknown-scope",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, threshold: {column: temp_max, op: '>'}}",
        "rule 'hot' (#1): threshold: needs at least one level: warning and/or critical",
        id="threshold-without-levels",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, threshold: {column: temp_max, op: '>=', warning: 90, critical: 83}}",
        "rule 'hot' (#1): threshold: critical (83) must be above warning (90) for op '>='",
        id="inverted-levels-rising",
    ),
    pytest.param(
        "- {name: battery, scope: rack, threshold: {column: battery_soc_min, op: '<', warning: 0.1, critical: 0.2}}",
        "rule 'battery' (#1): threshold: critical (0.2) must be below warning (0.1) for op '<'",
        id="inverted-levels-falling",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, for: 2 minutes, threshold: {column: temp_max, op: '>', warning: 83}}",
        "rule 'hot' (#1): for: '2 minutes' is not a duration",
        id="bad-duration",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, keep_firing_for: 5, threshold: {column: temp_max, op: '>', warning: 83}}",
        "rule 'hot' (#1): keep_firing_for: 5 is not a duration",
        id="bare-number-duration",
    ),
    pytest.param(
        """
        - name: hot
          scope: rack
          threshold: {column: radiator_c_max, op: ">", warning: 30}
          annotations: {summary: "{rack_id} node {node} at {value}"}
        """,
        "rule 'hot' (#1): annotations.summary: unknown placeholder {node}",
        id="unknown-placeholder",
    ),
    pytest.param(
        """
        - name: hot
          scope: gpu
          threshold: {column: temp_max, op: ">", warning: 83}
          annotations: {summary: "{gpu:>3}"}
        """,
        "rule 'hot' (#1): annotations.summary: {gpu:>3}: the only format is {value:.Nf}",
        id="format-on-a-label",
    ),
    pytest.param(
        """
        - name: down
          scope: rack_now
          state: {in: [critical]}
          annotations: {description: "state {value}"}
        """,
        "rule 'down' (#1): annotations.description: {value} is always empty in a state rule",
        id="value-in-a-state-rule",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, colour: red, threshold: {column: temp_max, op: '>', warning: 83}}",
        "rule 'hot' (#1): colour: Extra inputs are not permitted",
        id="extra-key",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, threshold: {column: temp_max, op: '>', warning: 83, critcal: 90}}",
        "rule 'hot' (#1): threshold.critcal: Extra inputs are not permitted",
        id="extra-nested-key",
    ),
    pytest.param(
        """
        - {name: ok_rule, scope: gpu, threshold: {column: temp_max, op: '>', warning: 83}}
        - {scope: gpu, threshold: {column: temp_max, op: '>', warning: 83}}
        """,
        "rule #2: name: Field required",
        id="missing-name-uses-the-index",
    ),
    pytest.param(
        "- {name: Hot-GPU, scope: gpu, threshold: {column: temp_max, op: '>', warning: 83}}",
        "rule 'Hot-GPU' (#1): name: String should match pattern",
        id="bad-name",
    ),
    pytest.param(
        "- {name: hot, scope: gpu}",
        "rule 'hot' (#1): condition: a rule has exactly one of threshold, state, rate, absent (got none)",
        id="no-condition",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, state: {in: [critical]}, threshold: {column: temp_max, op: '>', warning: 83}}",
        "rule 'hot' (#1): condition: a rule has exactly one of threshold, state, rate, absent (got threshold, state)",
        id="two-conditions",
    ),
    pytest.param(
        "- {name: gone, scope: rack, absent: {for_minutes: 5}}",
        "rule 'gone' (#1): absent: needs scope rack_now (the rule has scope rack)",
        id="absent-outside-rack-now",
    ),
    pytest.param(
        "- {name: warming, scope: rack_now, rate: {column: x, per_minutes: 5, op: '>', warning: 1}}",
        "rule 'warming' (#1): rate: needs scope gpu or rack",
        id="rate-on-rack-now",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, severity: critical, threshold: {column: temp_max, op: '>', warning: 83}}",
        "rule 'hot' (#1): severity: a threshold rule takes its severity from its warning/critical levels",
        id="severity-on-a-threshold-rule",
    ),
    pytest.param(
        "- {name: hot, scope: gpu, labels: {rack_id: x}, threshold: {column: temp_max, op: '>', warning: 83}}",
        "rule 'hot' (#1): labels.rack_id (key): reserved",
        id="reserved-label",
    ),
    pytest.param(
        "- {name: hot, scope: rack, group_by: [rule, gpu], threshold: {column: radiator_c_max, op: '>', warning: 1}}",
        "rule 'hot' (#1): group_by: 'gpu' needs scope gpu (the rule has scope rack)",
        id="group-by-gpu-on-a-rack-rule",
    ),
    pytest.param(
        "- {name: down, scope: rack_now, state: {in: [ok, unknown], severity_from_state: true}}",
        "rule 'down' (#1): state: severity_from_state needs degraded or critical in 'in'",
        id="severity-from-state-without-levels",
    ),
]


@pytest.mark.parametrize(("rules_yaml", "expected"), MALFORMED)
def test_each_malformed_rule_names_the_rule_and_the_field(rules_yaml: str, expected: str) -> None:
    found = problems("rules:\n" + textwrap.indent(textwrap.dedent(rules_yaml).strip(), "  ") + "\n")
    assert any(p.startswith(expected) for p in found), found


def test_a_route_to_an_undeclared_hook_is_refused() -> None:
    found = problems(
        """
        rules:
          - {name: hot, scope: gpu, threshold: {column: temp_max, op: '>', warning: 83}}
        hooks:
          - {name: ops_webhook, kind: webhook, settings: {url: "https://ops.example"}}
        routes:
          - {match: {severity: critical}, hook: pager}
          - {match: {tem: compute}, hook: ops_webhook}
          - {match: {severity: crit}, hook: ops_webhook}
        """
    )
    assert found == (
        "route #1: hook: 'pager' is not a declared hook (declared: ops_webhook)",
        "route #2: match.tem: no rule has this label (labels: gpu, node, playback, rack_id, rule, satellite, severity)",
        "route #3: match.severity: 'crit' is not one of info, warning, critical",
    )


def test_a_hook_of_an_unknown_kind_is_named() -> None:
    found = problems(
        """
        rules: []
        hooks:
          - {name: pager, kind: sms}
        """
    )
    kinds = "'webhook', 'kafka', 'command', 'python' or 'alertmanager'"
    assert found == (f"hook 'pager' (#1): kind: Input should be {kinds} (got 'sms')",)


def test_every_problem_of_the_file_is_listed_items_first_then_cross_references() -> None:
    with pytest.raises(RulesError) as caught:
        rules(
            """
            rules:
              - {name: a, scope: gpu, for: soon, threshold: {column: temp_max, op: '>', warning: 83}}
              - {name: b, scope: planet, state: {in: [critical]}}
              - {name: a, scope: rack, absent: {for_minutes: 5}}
            unknown_section: {}
            """
        )
    error = caught.value
    assert error.problems == (
        "rule 'a' (#1): for: 'soon' is not a duration: use a whole number with a unit (30s, 2m, 1h, 1h30m) or 0",
        "rule 'b' (#2): scope: Input should be 'gpu', 'rack' or 'rack_now' (got 'planet')",
        "rule 'a' (#3): absent: needs scope rack_now (the rule has scope rack)",
        "unknown_section: Extra inputs are not permitted",
        "rule 'a' (#3): name: duplicate of rule #1",
    )
    assert str(error).startswith("test.yaml: invalid alert rules (5 problems):\n  - rule 'a' (#1): for:")
    assert error.line is None


def test_a_yaml_syntax_error_gives_its_line() -> None:
    with pytest.raises(RulesError) as caught:
        rules(
            """
            rules:
              - name: hot
                scope: gpu
                threshold: {column: temp_max, op: '>', warning: 83
              - name: cold
            """
        )
    assert caught.value.line == 6
    (problem,) = caught.value.problems
    assert problem == "line 6, column 9: YAML syntax error: expected ',' or '}', but got ':'"


def test_a_duplicate_yaml_key_is_an_error_with_its_line() -> None:
    with pytest.raises(RulesError) as caught:
        rules(
            """
            rules:
              - name: hot
                scope: gpu
                threshold: {column: temp_max, op: '>', warning: 83}
                threshold: {column: temp_max, op: '>', warning: 85}
            """
        )
    assert caught.value.line == 6
    assert "found duplicate key 'threshold' (first on line 5)" in caught.value.problems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty: expected a mapping with a 'rules' list"),
        ("- a\n- b\n", "expected a mapping with a 'rules' list at the top, got list"),
        ("hooks: []\n", "rules: Field required"),
    ],
)
def test_the_top_level_shape_is_checked(text: str, expected: str) -> None:
    assert problems(text) == (expected,)


def test_an_unreadable_file_is_a_rules_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RulesError, match=r"nope\.yaml: invalid alert rules") as caught:
        load_rules(missing)
    assert caught.value.problems[0].startswith("cannot read the rules file:")


def test_a_ruleset_built_in_code_is_cross_checked_too() -> None:
    rule = one_rule(GPU_TEMP)
    with pytest.raises(ValidationError, match=r"rule 'gpu_temp' \(#2\): name: duplicate of rule #1"):
        RuleSet(rules=[rule, rule])


def test_errors_form_one_tree() -> None:
    error = DeliveryError("ops_webhook", "HTTP 503", attempts=5)
    assert str(error) == "hook 'ops_webhook' failed after 5 attempts: HTTP 503"
    assert (error.hook, error.attempts, error.reason) == ("ops_webhook", 5, "HTTP 503")
    assert all(issubclass(kind, AlertingError) for kind in (RulesError, RuleInputError, DeliveryError))


# ---- Evaluation ---------------------------------------------------------------------------------


def test_a_threshold_picks_the_worst_level_met() -> None:
    rule = one_rule(GPU_TEMP)
    frame = gpu_windows(
        {"gpu": 0, "temp_max": 82.9},
        {"gpu": 1, "temp_max": 83.0},
        {"gpu": 2, "temp_max": 89.9},
        {"gpu": 3, "temp_max": 90.0},
        {"gpu": 4, "temp_max": None},
    )
    found = instances(rule, frame)
    assert found.schema == pl.Schema(INSTANCE_SCHEMA)
    assert found.select("severity", "value").rows() == [("warning", 83.0), ("warning", 89.9), ("critical", 90.0)]
    assert found["event_at"].to_list() == [T, T, T]
    assert found["summary"].to_list() == [
        "sat-0001/rack-1 node 0 gpu 1: 83.0 C (warning, compute)",
        "sat-0001/rack-1 node 0 gpu 2: 89.9 C (warning, compute)",
        "sat-0001/rack-1 node 0 gpu 3: 90.0 C (critical, compute)",
    ]
    labels = json.loads(found["labels"][2])
    assert labels == {
        "rule": "gpu_temp", "satellite": "sat-0001", "rack_id": "sat-0001/rack-1", "node": "0", "gpu": "3",
        "severity": "critical", "team": "compute",
    }  # fmt: skip
    assert list(labels) == sorted(labels)
    assert json.loads(found["annotations"][0]) == {"summary": found["summary"][0]}


def test_a_falling_threshold_and_a_single_level() -> None:
    battery = one_rule(
        """
        rules:
          - {name: battery, scope: rack, threshold: {column: battery_soc_min, op: "<", warning: 0.2, critical: 0.1}}
        """
    )
    frame = rack_windows({"battery_soc_min": 0.25}, {"battery_soc_min": 0.15}, {"battery_soc_min": 0.05})
    assert instances(battery, frame)["severity"].to_list() == ["warning", "critical"]
    dbe = one_rule(
        """
        rules:
          - {name: dbe, scope: gpu, threshold: {column: ecc_dbe_inc, op: ">", critical: 0}}
        """
    )
    found = instances(dbe, gpu_windows({"ecc_dbe_inc": 0}, {"gpu": 5, "ecc_dbe_inc": 2}))
    assert found.select("severity", "value").rows() == [("critical", 2.0)]
    assert found["summary"].to_list() == ["dbe critical on sat-0001/rack-1 node 0 gpu 5 (value 2.0)"]


def test_a_state_rule_with_and_without_severity_from_state() -> None:
    ruleset = rules(
        """
        rules:
          - name: unhealthy
            scope: rack
            state: {in: [degraded, critical], severity_from_state: true}
          - name: dark
            scope: rack
            state: {in: [unknown]}
            severity: info
        """
    )
    frame = rack_windows(
        {"rack_id": "sat-0001/rack-1", "state": "ok"},
        {"rack_id": "sat-0001/rack-2", "state": "degraded"},
        {"rack_id": "sat-0001/rack-3", "state": "critical"},
        {"rack_id": "sat-0001/rack-4", "state": "unknown"},
        {"rack_id": "sat-0001/rack-5", "state": None},
    )
    unhealthy = instances(ruleset.rule("unhealthy"), frame)
    assert unhealthy.select(pl.col("labels").str.json_path_match("$.rack_id"), "severity", "value").rows() == [
        ("sat-0001/rack-2", "warning", None),
        ("sat-0001/rack-3", "critical", None),
    ]
    dark = instances(ruleset.rule("dark"), frame)
    assert dark.select(pl.col("labels").str.json_path_match("$.rack_id"), "severity").rows() == [
        ("sat-0001/rack-4", "info")
    ]


def test_a_rate_rule_uses_the_windows_given_as_context() -> None:
    rule = one_rule(
        """
        rules:
          - name: warming
            scope: rack
            rate: {column: radiator_c_max, per_minutes: 2, op: ">", warning: 1.0, critical: 3.0}
            annotations: {summary: "{rack_id} +{value:.2f} C/min"}
        """
    )
    assert rule.lookback == 2 * MIN
    history = rack_windows(
        {"window_start": T, "radiator_c_max": 0.0},
        {"window_start": T + MIN, "radiator_c_max": 1.0},
        {"rack_id": "sat-0002/rack-1", "window_start": T, "radiator_c_max": 10.0},
    )
    frame = rack_windows(
        {"window_start": T + 2 * MIN, "radiator_c_max": 3.0},  # (3 - 0) / 2 = 1.5: warning
        {"window_start": T + 3 * MIN, "radiator_c_max": 8.0},  # (8 - 1) / 2 = 3.5: critical
        {"window_start": T + 4 * MIN, "radiator_c_max": 4.0},  # (4 - 3) / 2 = 0.5: from the frame itself
        {"rack_id": "sat-0002/rack-1", "window_start": T + 2 * MIN, "radiator_c_max": 10.5},  # 0.25
        {"rack_id": "sat-0003/rack-1", "window_start": T + 2 * MIN, "radiator_c_max": 99.0},  # no earlier window
    )
    found = instances(rule, frame, context=history)
    assert found.select("event_at", "severity", "value", "summary").rows() == [
        (T + 2 * MIN, "warning", 1.5, "sat-0001/rack-1 +1.50 C/min"),
        (T + 3 * MIN, "critical", 3.5, "sat-0001/rack-1 +3.50 C/min"),
    ]
    # A window both in the context and the frame counts as the frame's (recomputed) version.
    stale = history.vstack(rack_windows({"window_start": T + 2 * MIN, "radiator_c_max": 9.0}))
    recomputed = rack_windows(
        {"window_start": T + 2 * MIN, "radiator_c_max": 3.0},  # (3 - 0) / 2 = 1.5
        {"window_start": T + 4 * MIN, "radiator_c_max": 10.0},  # (10 - 3) / 2 = 3.5, not (10 - 9) / 2
    )
    assert instances(rule, recomputed, context=stale)["value"].to_list() == [1.5, 3.5]
    with pytest.raises(RuleInputError, match="rule 'warming' \\(rate\\): needs context"):
        instances(rule, frame)


def test_an_absent_rule_fires_only_while_contact_is_expected() -> None:
    rule = one_rule(
        """
        rules:
          - {name: rack_absent, scope: rack_now, absent: {for_minutes: 5}, severity: critical}
        """
    )
    frame = now_rows(
        {"rack_id": "sat-0001/rack-1", "last_window_start": T - 6 * MIN},  # last window ended 5 min ago: fires
        {"rack_id": "sat-0001/rack-2", "last_window_start": T - 5 * MIN},  # ended 4 min ago: not yet
        {"rack_id": "sat-0001/rack-3", "last_window_start": T - 60 * MIN, "in_contact_expected": False},  # LOS
        {"rack_id": "sat-0001/rack-4", "last_window_start": T - 60 * MIN, "in_contact_expected": None},
        {"rack_id": "sat-0002/rack-1", "last_window_start": None},  # never heard from, contact expected
        {"rack_id": "sat-0002/rack-2", "last_window_start": None, "in_contact_expected": False},
    )
    found = instances(rule, frame)
    assert found.select(pl.col("labels").str.json_path_match("$.rack_id"), "severity", "value", "event_at").rows() == [
        ("sat-0001/rack-1", "critical", 5.0, T),
        ("sat-0002/rack-1", "critical", None, T),
    ]


def test_rack_now_rules_run_on_judge_now_output() -> None:
    """The example file's rack_now rules on what ``processing.health.judge_now`` produces."""
    ruleset = load_rules(EXAMPLE)
    utc = pl.Datetime("us", "UTC")
    latest = pl.DataFrame(
        {
            "rack_id": ["sat-0001/rack-1", "sat-0001/rack-2", "sat-0002/rack-1"],
            "window_start": [T - MIN, T - 30 * MIN, T - 30 * MIN],
            "state": ["critical", "ok", "critical"],
            "reasons": [["node 3: gpu 5: gpu temp 91.0 C >= critical 90 C"], [], ["radiator 50 C"]],
        },
        schema_overrides={"window_start": utc},
    )
    contact = pl.DataFrame(
        {
            "rack_id": ["sat-0001/rack-1", "sat-0001/rack-2", "sat-0002/rack-1"],
            "as_of": [T, T, T],
            "in_contact_expected": [True, True, False],
            "expected_frame_interval_s": [1.0, 1.0, 1.0],
            "predicted_next_contact": [None, None, T + 40 * MIN],
            "last_frame_at": [T - timedelta(seconds=1), T - 29 * MIN, T - 29 * MIN],
        },
        schema_overrides={"as_of": utc, "predicted_next_contact": utc, "last_frame_at": utc},
    )
    now = judge_now(latest, contact)
    found = evaluate(ruleset.rules, {"rack_now": now})
    racks = pl.col("labels").str.json_path_match("$.rack_id")
    # sat-0002/rack-1 is out of sight (unknown now, critical last known): neither rule fires for it.
    assert found.select("rule", racks, "severity").rows() == [
        ("rack_health_critical", "sat-0001/rack-1", "critical"),
        ("rack_absent", "sat-0001/rack-2", "warning"),
    ]
    assert found["summary"].to_list() == [
        "sat-0001/rack-1 is critical",
        "sat-0001/rack-2 silent for 29 min while in contact",
    ]


def test_fingerprints_are_stable_and_distinct_per_gpu() -> None:
    rule = one_rule(GPU_TEMP)
    frame = gpu_windows(
        *({"node": node, "gpu": gpu, "temp_max": 85.0 + gpu} for node in range(8) for gpu in range(8)),
        *(
            {"node": node, "gpu": gpu, "window_start": T + MIN, "temp_max": 95.0}
            for node in range(8)
            for gpu in range(8)
        ),
    )
    found = instances(rule, frame)
    first, second = found.slice(0, 64), found.slice(64)
    assert first["fingerprint"].n_unique() == 64
    assert first["fingerprint"].to_list() == second["fingerprint"].to_list()  # same GPU, other window and severity
    assert set(second["severity"]) == {"critical"}
    assert found["fingerprint"].str.contains(r"^[0-9a-f]{16}$").all()
    # The vectorised fingerprint is the reference one, which is pinned: stable across runs and versions.
    assert found["fingerprint"][0] == fingerprint("gpu_temp", "sat-0001/rack-1", 0, 0)
    assert fingerprint("gpu_temp", "sat-0001/rack-1", 0, 1) == "2d3dd4a3547c0bb1"
    shuffled = instances(rule, frame.reverse())
    assert sorted(shuffled["fingerprint"].unique()) == sorted(first["fingerprint"])
    other_rack = instances(rule, frame.head(1).with_columns(pl.lit("sat-0001/rack-2").alias("rack_id")))
    assert other_rack["fingerprint"][0] not in set(first["fingerprint"])
    unicode = rack_windows({"rack_id": "sat-é/rack-1", "state": "critical"})
    down = one_rule("rules:\n  - {name: down, scope: rack, state: {in: [critical]}}\n")
    assert instances(down, unicode)["fingerprint"][0] == fingerprint("down", "sat-é/rack-1")
    assert fingerprint("down", "sat-é/rack-1") != fingerprint("down2", "sat-é/rack-1")


def test_a_satellites_racks_share_a_notification_group() -> None:
    rule = one_rule(
        """
        rules:
          - {name: radiator, scope: rack, threshold: {column: radiator_c_max, op: ">", warning: 30, critical: 45}}
        """
    )
    frame = rack_windows(
        {"rack_id": "sat-0001/rack-1", "radiator_c_max": 35.0},
        {"rack_id": "sat-0001/rack-2", "radiator_c_max": 50.0},
        {"rack_id": "sat-0002/rack-1", "radiator_c_max": 31.0},
    )
    found = instances(rule, frame)
    assert found["group"].to_list() == [
        '{"rule":"radiator","satellite":"sat-0001"}',
        '{"rule":"radiator","satellite":"sat-0001"}',
        '{"rule":"radiator","satellite":"sat-0002"}',
    ]
    assert found["fingerprint"].n_unique() == 3


def test_a_missing_or_non_numeric_column_names_the_rule() -> None:
    rule = one_rule(GPU_TEMP)
    with pytest.raises(
        RuleInputError, match=r"rule 'gpu_temp' \(scope gpu, threshold\): the frame lacks column\(s\) temp_max"
    ):
        instances(rule, gpu_windows({}).drop("temp_max"))
    with pytest.raises(RuleInputError, match="column temp_max of the frame is String, not numeric"):
        instances(rule, gpu_windows({}).with_columns(pl.col("temp_max").cast(pl.String)))


def test_an_empty_frame_gives_no_instances_with_the_schema() -> None:
    rule = one_rule(GPU_TEMP)
    assert instances(rule, gpu_windows({}).clear()).schema == pl.Schema(INSTANCE_SCHEMA)
    assert condition_windows(rule, gpu_windows({}).clear()).schema == pl.Schema(RUN_SCHEMA)
    assert evaluate([rule], {"rack": rack_windows({})}).schema == pl.Schema(INSTANCE_SCHEMA)


def test_condition_windows_give_runs_for_the_lifecycle() -> None:
    rule = one_rule(GPU_TEMP.replace("scope: gpu", "scope: gpu\n        for: 2m"))
    temps = {0: 85.0, 1: 91.0, 2: 84.0, 3: 70.0, 4: 86.0, 5: 87.0, 7: 95.0}  # minute 6: no window at all
    frame = gpu_windows(*({"window_start": T + m * MIN, "temp_max": t} for m, t in temps.items()))
    runs = condition_windows(rule, frame.reverse())  # any order
    assert runs.schema == pl.Schema(RUN_SCHEMA)
    assert runs.select("event_at", "severity", "run_start", "held_for", "for_met").rows() == [
        (T, "warning", T, MIN, False),
        (T + MIN, "critical", T, 2 * MIN, True),
        (T + 2 * MIN, "warning", T, 3 * MIN, True),
        (T + 4 * MIN, "warning", T + 4 * MIN, MIN, False),  # the ok minute 3 ended the first run
        (T + 5 * MIN, "warning", T + 4 * MIN, 2 * MIN, True),
        (T + 7 * MIN, "critical", T + 7 * MIN, MIN, False),  # so did the missing minute 6
    ]


def test_rack_now_runs_are_ended_only_by_a_judgement_where_the_condition_fails() -> None:
    rule = one_rule(
        """
        rules:
          - {name: down, scope: rack_now, state: {in: [critical]}, severity: critical, for: 5m}
        """
    )
    states = {0: "critical", 3: "critical", 7: "critical", 8: "ok", 9: "critical"}
    judgements = now_rows(*({"as_of": T + m * MIN, "state": s} for m, s in states.items()))
    runs = condition_windows(rule, judgements)
    assert runs.select("event_at", "held_for", "for_met").rows() == [
        (T, timedelta(0), False),
        (T + 3 * MIN, 3 * MIN, False),
        (T + 7 * MIN, 7 * MIN, True),
        (T + 9 * MIN, timedelta(0), False),
    ]


def test_evaluate_concatenates_the_rules_of_the_scopes_given() -> None:
    ruleset = load_rules(EXAMPLE)
    gpus = gpu_windows({"temp_max": 91.0}, {"gpu": 1, "ecc_dbe_inc": 1})
    racks = rack_windows({"radiator_c_max": 46.0})
    found = evaluate(ruleset.rules, {"gpu": gpus, "rack": racks}, context={"rack": racks.clear()})
    assert found.select("rule", "severity").rows() == [
        ("gpu_temperature", "critical"),
        ("gpu_double_bit_ecc", "critical"),
        ("radiator_temperature", "critical"),
    ]
    assert found["summary"].to_list() == [
        "sat-0001/rack-1 node 0 GPU 0 at 91.0 C (critical)",
        "sat-0001/rack-1 node 0 GPU 1: 1 new double-bit ECC error(s), drain the GPU",
        "sat-0001: radiator of sat-0001/rack-1 at 46.0 C (critical)",
    ]


def test_routes_may_match_playback_to_send_late_alerts_elsewhere() -> None:
    ruleset = parse_rules(
        """
rules:
  - {name: hot, scope: gpu, threshold: {column: temp_max, op: ">=", critical: 90}}
hooks:
  - {name: pager, kind: webhook, settings: {url: "http://127.0.0.1:9/a"}}
  - {name: ticket, kind: webhook, settings: {url: "http://127.0.0.1:9/b"}}
routes:
  - {match: {playback: "true"}, hook: ticket}
  - {match: {}, hook: pager}
"""
    )
    assert [h.name for h in ruleset.hooks_for({"rule": "hot", "playback": "true"})] == ["ticket", "pager"]
    assert [h.name for h in ruleset.hooks_for({"rule": "hot", "playback": "false"})] == ["pager"]
