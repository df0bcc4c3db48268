"""The command line answers bad settings and bad SQL with clear messages, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from storage.database import open_database
from tests.helpers.rules import write_rules


def orbitwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "orbitwatch.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A migrated history file with two frames' worth of rows in a tiny table."""
    path = tmp_path / "history.duckdb"
    con = open_database(path)
    con.execute("INSERT INTO dead_letters VALUES ('t', 1, 7, now(), NULL, 'xx'::BLOB, 'bad magic byte 0x01', now())")
    con.close()
    return path


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS", "no-port", "kafka.bootstrap_servers"),
        ("ORBITWATCH_DAEMON__DLQ_MAX_RATIO", "3", "daemon.dlq_max_ratio"),
        ("ORBITWATCH_KAFKA__SECURITY_PROTOCOL", "SASL_SSL", "kafka"),
        ("ORBITWATCH_STORAGE__MEMORY_LIMIT", "lots", "storage.memory_limit"),
        ("ORBITWATCH_KAFKA__SESSION_TIMEOUT_MS", "ten", "kafka.session_timeout_ms"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_bad_setting_stops_at_start_naming_the_field(command: str, variable: str, value: str, field: str) -> None:
    result = orbitwatch(command, env={variable: value})
    assert result.returncode == 1
    assert field in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_files_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[kafka\ntopic = 1")
    result = orbitwatch("check-config", "--config", str(broken))
    assert result.returncode == 1
    assert "not valid TOML" in result.stderr
    assert str(broken) in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[kafka]\ntopik = "x"\n')
    result = orbitwatch("check-config", "--config", str(unknown))
    assert result.returncode == 1
    assert "kafka.topik" in result.stderr
    missing = orbitwatch("check-config", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 1
    assert "cannot read config file" in missing.stderr


def test_check_config_prints_settings_with_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text(
        '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\nsasl_username = "ops"\n'
        'sasl_password = "hunter2"\n'
    )
    result = orbitwatch("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["kafka"]["sasl_username"] == "ops"
    assert "hunter2" not in result.stdout
    assert printed["kafka"]["sasl_password"] == "**********"


def test_bad_sql_gets_duckdbs_message(history: Path) -> None:
    result = orbitwatch("query", "--db", str(history), "SELEC 1")
    assert result.returncode == 1
    assert "Parser Error" in result.stderr
    assert "Traceback" not in result.stderr
    result = orbitwatch("query", "--db", str(history), "SELECT nope FROM dead_letters")
    assert result.returncode == 1
    assert 'Referenced column "nope" not found' in result.stderr


def test_query_is_read_only(history: Path) -> None:
    result = orbitwatch("query", "--db", str(history), "DELETE FROM dead_letters")
    assert result.returncode == 1
    assert "read-only" in result.stderr
    with duckdb.connect(str(history), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)


def test_query_formats(history: Path) -> None:
    sql = "SELECT kafka_partition, kafka_offset, reason FROM dead_letters"
    table = orbitwatch("query", "--db", str(history), sql)
    assert table.returncode == 0, table.stderr
    assert "bad magic byte 0x01" in table.stdout
    assert "(1 rows)" in table.stdout
    csv = orbitwatch("query", "--db", str(history), "--format", "csv", sql)
    assert csv.stdout.splitlines() == ["kafka_partition,kafka_offset,reason", "1,7,bad magic byte 0x01"]
    as_json = orbitwatch("query", "--db", str(history), "--format", "json", sql)
    assert json.loads(as_json.stdout) == [{"kafka_partition": 1, "kafka_offset": 7, "reason": "bad magic byte 0x01"}]


def test_query_without_history_or_with_a_held_file(tmp_path: Path, history: Path) -> None:
    absent = orbitwatch("query", "--db", str(tmp_path / "none.duckdb"), "SELECT 1")
    assert absent.returncode == 1
    assert "no history database" in absent.stderr
    holder = open_database(history)
    try:
        held = orbitwatch("query", "--db", str(history), "SELECT 1")
    finally:
        holder.close()
    assert held.returncode == 1
    assert "held by another process" in held.stderr
    assert "Traceback" not in held.stderr


def test_help_answers_questions() -> None:
    result = orbitwatch("--help")
    assert result.returncode == 0
    for command in ("run", "simulate", "query", "check-config", "health", "demo", "broker"):
        assert command in result.stdout
    run_help = orbitwatch("run", "--help")
    assert "SIGTERM" in run_help.stdout
    assert "ORBITWATCH_CONFIG" in run_help.stdout


def test_rules_check_accepts_the_example_and_names_rule_and_field_of_each_problem(tmp_path: Path) -> None:
    ok = orbitwatch("rules", "check", str(Path(__file__).parents[1] / "deploy" / "alerts" / "rules.example.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    bad = write_rules(
        tmp_path,
        "rules:\n  - name: hot\n    scope: gpu\n    threshold: {column: temp_max, op: '>', warning: 90, critical: 80}\n"
        "  - name: hot\n    scope: planet\n    state: {in: [critical]}\n",
    )
    result = orbitwatch("rules", "check", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "rule 'hot' (#1): threshold: critical (80) must be above warning (90)" in result.stderr
    assert "rule 'hot' (#2): scope" in result.stderr


def test_run_with_a_bad_rules_file_stops_at_start_up_naming_rule_and_field(tmp_path: Path) -> None:
    bad = write_rules(tmp_path, "rules:\n  - name: hot\n    scope: gpu\n    threshold: {column: temp_max, op: '>'}\n")
    env = {"ORBITWATCH_ALERTING__RULES_FILE": str(bad), "ORBITWATCH_STORAGE__PATH": str(tmp_path / "h.duckdb")}
    result = orbitwatch("run", "--max-messages", "1", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "rule 'hot' (#1): threshold" in result.stderr
    assert not (tmp_path / "h.duckdb").exists(), "nothing is opened before the rules are valid"


def test_sql_shell_runs_statements_across_lines_and_reports_errors_without_stopping(history: Path) -> None:
    script = (
        "SELECT count(*) AS letters\n  FROM dead_letters;\n.format csv\nSELECT nope;\nSELECT 41 + 1 AS answer;\n.quit\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "orbitwatch.cli", "sql", "--db", str(history)],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1  # one statement failed
    assert "letters" in result.stdout
    assert "answer\n42\n" in result.stdout
    assert 'Error: Binder Error: Referenced column "nope"' in result.stderr  # DuckDB's message, then it goes on
    assert "Traceback" not in result.stderr
