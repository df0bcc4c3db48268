"""``orbitwatch alerts`` and ``orbitwatch rules dry-run``: the real CLI in subprocesses on real DuckDB files.

The alert state is made by the real writer with alerting on (``AlertTables`` from a small rules file):
GPUs of two satellites overheat for five minutes and fire. While a process holds the file (as a daemon
does), the CLI lists the snapshot and spools commands, which ``apply_spool`` applies on the holder's
connection as the daemon does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from alerting.commands import AlertCommand, apply_direct
from alerting.errors import CommandError
from alerting.rules.loading import parse_rules
from alerting.rules.ruleset import RuleSet
from alerting.snapshot import snapshot_path
from alerting.spool import apply_spool, spool_command, spool_dir
from alerting.tables import AlertTables, read_state
from ingest.codec import FrameDecoder
from orbitwatch import assemble
from orbitwatch.alert_intake import alert_intake
from orbitwatch.errors import ServiceError
from processing.rows import prepare_batch
from storage.database import open_database
from storage.derived import DerivedTables
from storage.errors import StorageError
from storage.writer import HistoryWriter
from tests.helpers.frames import DEFAULT_SAMPLED_AT, encode_message, gpu_sample, rack_frame, raw_batch, registry
from tests.helpers.rules import write_rules

T0 = DEFAULT_SAMPLED_AT
RULES = """
rules:
  - name: gpu_temperature
    scope: gpu
    threshold: {column: temp_max, op: ">=", warning: 83, critical: 90}
    for: 2m
    keep_firing_for: 1m
  - name: rack_health_critical
    scope: rack_now
    state: {in: [critical]}
    severity: critical
"""
HOT_1 = ("sat-0001/rack-1", "sat-0001/rack-2")
HOT_2 = "sat-0002/rack-1"


def orbitwatch(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "orbitwatch.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "220"},
        timeout=60,
        check=False,
    )


def ruleset() -> RuleSet:
    return parse_rules(RULES)


def frames(rack: str, seconds: range, temps: dict[int, Any]) -> list[bytes]:
    """One frame every 2 s of ``rack`` with GPUs (node 0, gpu g) at ``temps[g](second)`` C."""
    return [
        encode_message(
            rack_frame(
                rack_id=rack,
                frame_seq=s,
                sampled_at=T0 + timedelta(seconds=s),
                gpus=[gpu_sample(0, g, temp_c=temp(s), xid=None, throttle_reasons=0) for g, temp in temps.items()],
            ),
            2,
        )
        for s in seconds
    ]


def store(path: Path, values: list[bytes], received: datetime, alerts: bool = True) -> None:
    """Store ``values`` through the real writer (derived tables and, with ``alerts``, the alert lifecycle)."""
    con = open_database(path)
    try:
        derived = DerivedTables(con)
        writer = HistoryWriter(con, derived, AlertTables(con, ruleset(), "http://x") if alerts else None)
        ms = int(received.timestamp() * 1000)
        raw = raw_batch(list[bytes | None](values), timestamps_ms=[ms] * len(values))
        decoded = FrameDecoder(registry()).decode(raw)
        writer.write(assemble.to_store(raw, decoded, prepare_batch(decoded.frames)))
    finally:
        con.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A history with six firing alerts: three hot GPUs on sat-0001, one on sat-0002, and their racks critical."""
    path = tmp_path_factory.mktemp("alerts") / "template.duckdb"
    five = range(0, 300, 2)
    values = frames(HOT_1[0], five, {0: lambda s: 95.0, 1: lambda s: 85.0, 2: lambda s: 55.0})
    values += frames(HOT_1[1], five, {0: lambda s: 86.0})
    values += frames(HOT_2, five, {3: lambda s: 91.0})
    store(path, values, T0 + timedelta(minutes=5))
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "history.duckdb"
    shutil.copy(template, copy)
    return copy


def listed(db: Path) -> dict[str, Any]:
    result = orbitwatch("alerts", "--db", str(db), "--format", "json")
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def by_gpu(body: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(a["rack_id"], a["node"], a["gpu"]): a for a in body["alerts"]}


def test_alerts_lists_live_alerts_as_a_table_and_json(db: Path) -> None:
    body = listed(db)
    assert body["source"] == "database"
    assert [(a["rule"], a["rack_id"], a["gpu"], a["status"], a["severity"]) for a in body["alerts"]] == [
        ("gpu_temperature", HOT_1[0], "0", "firing", "critical"),  # worst severity first
        ("gpu_temperature", HOT_2, "3", "firing", "critical"),
        ("rack_health_critical", HOT_1[0], None, "firing", "critical"),  # scope rack_now: started later
        ("rack_health_critical", HOT_2, None, "firing", "critical"),
        ("gpu_temperature", HOT_1[0], "1", "firing", "warning"),
        ("gpu_temperature", HOT_1[1], "0", "firing", "warning"),
    ]
    first = body["alerts"][0]
    assert first["started_at"] == T0.isoformat()
    assert first["event_at"] == (T0 + timedelta(minutes=1)).isoformat()  # for: 2m met at the second window
    assert first["learned_at"] == (T0 + timedelta(minutes=5)).isoformat()
    assert first["playback"] is False
    assert first["acked_until"] is None
    assert first["shelved_until"] is None
    assert len(first["fingerprint"]) == 16

    table = orbitwatch("alerts", "--db", str(db))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    row = next(line for line in lines if first["fingerprint"][:8] in line)
    for text in ("critical", "firing", "gpu_temperature", HOT_1[0], "2026-03-01 12:00:00Z", "12:01:00Z", "no"):
        assert text in row
    assert "(6 live alerts: 6 firing, 0 pending)" in table.stdout
    assert f"source: database {db}" in table.stdout
    assert "healthy" not in table.stdout


def test_ack_by_prefix_shows_its_expiry_and_unack_clears_it(db: Path) -> None:
    target = by_gpu(listed(db))[(HOT_1[0], "0", "1")]
    before = datetime.now(UTC)
    acked = orbitwatch("alerts", "ack", target["fingerprint"][:6], "--for", "2h", "--db", str(db))
    assert acked.returncode == 0, acked.stderr
    assert f"acknowledged {target['fingerprint'][:8]} (gpu_temperature warning firing on {HOT_1[0]}" in acked.stdout
    assert f"applied directly to {db}" in acked.stdout
    alerts = by_gpu(listed(db))
    until = datetime.fromisoformat(alerts[(HOT_1[0], "0", "1")]["acked_until"])
    assert before + timedelta(hours=2) <= until <= datetime.now(UTC) + timedelta(hours=2)
    assert [a["acked_until"] for key, a in alerts.items() if key != (HOT_1[0], "0", "1")] == [None] * 5
    table = orbitwatch("alerts", "--db", str(db))
    assert until.strftime("%Y-%m-%d %H:%M:%SZ") in table.stdout

    unacked = orbitwatch("alerts", "unack", target["fingerprint"], "--db", str(db))
    assert unacked.returncode == 0, unacked.stderr
    assert by_gpu(listed(db))[(HOT_1[0], "0", "1")]["acked_until"] is None


def test_shelve_by_label_matcher_shelves_only_the_matching_alerts(db: Path) -> None:
    shelved = orbitwatch("alerts", "shelve", "--match", "satellite=sat-0001", "--for", "30m", "--db", str(db))
    assert shelved.returncode == 0, shelved.stderr
    assert shelved.stdout.startswith("shelved ")
    alerts = by_gpu(listed(db))
    on_sat1 = {key: a["shelved_until"] for key, a in alerts.items() if key[0] in HOT_1}
    assert len(on_sat1) == 4  # three GPUs and a rack
    assert all(value is not None for value in on_sat1.values())
    assert alerts[(HOT_2, "0", "3")]["shelved_until"] is None

    both = orbitwatch("alerts", "unshelve", "--match", "satellite=sat-0001", "--match", "gpu=0", "--db", str(db))
    assert both.returncode == 0, both.stderr
    alerts = by_gpu(listed(db))
    assert alerts[(HOT_1[0], "0", "0")]["shelved_until"] is None
    assert alerts[(HOT_1[1], "0", "0")]["shelved_until"] is None
    assert alerts[(HOT_1[0], "0", "1")]["shelved_until"] is not None

    none = orbitwatch("alerts", "shelve", "--match", "satellite=sat-0009", "--for", "1h", "--db", str(db))
    assert none.returncode == 1
    assert 'no live alert matches {"satellite": "sat-0009"}' in none.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ack", "ffffffffffff"], "no live alert has fingerprint 'ffffffffffff'"),
        (["ack", "0", "--for", "2"], "'2' is not a duration"),
        (["ack", "0", "--for", "2 hours"], "is not a duration"),
        (["ack", "0", "--for", "0"], "must be longer than 0"),
        (["shelve", "--for", "1h"], "give a FINGERPRINT or --match"),
        (["shelve", "--match", "satellite", "--for", "1h"], "'satellite' is not label=value"),
        (["shelve", "abc"], "Missing option '--for'"),
    ],
)
def test_bad_commands_get_clear_errors_and_change_nothing(db: Path, args: list[str], message: str) -> None:
    before = listed(db)
    result = orbitwatch("alerts", *args, "--db", str(db))
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert listed(db) == before


def test_ambiguous_prefix_and_missing_database(db: Path, tmp_path: Path) -> None:
    fingerprints = [a["fingerprint"] for a in listed(db)["alerts"]]
    shared = next(c for c in "0123456789abcdef" if sum(fp.startswith(c) for fp in fingerprints) > 1)
    result = orbitwatch("alerts", "ack", shared, "--db", str(db))
    assert result.returncode == 1
    assert f"fingerprint '{shared}' is ambiguous" in result.stderr
    assert "Traceback" not in result.stderr
    missing = orbitwatch("alerts", "ack", "abc", "--db", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 1
    assert "no history database" in missing.stderr
    assert not (tmp_path / "none.duckdb").exists()


@pytest.fixture
def daemon_like(db: Path) -> Iterator[AlertTables]:
    """Holds the file as a daemon does: the writer's connection with alerting (and the snapshot) on."""
    con = open_database(db)
    alerts = AlertTables(con, ruleset(), "http://x", snapshot_path(db))
    yield alerts
    con.close()


def test_a_held_database_is_listed_from_the_snapshot_and_commands_are_spooled(
    db: Path, daemon_like: AlertTables
) -> None:
    listing = orbitwatch("alerts", "--db", str(db))
    assert listing.returncode == 0, listing.stderr
    assert f"source: snapshot {snapshot_path(db)} written" in listing.stdout
    assert "ago) by the daemon holding the database" in listing.stdout
    assert "(6 live alerts: 6 firing, 0 pending)" in listing.stdout
    body = listed(db)
    assert body["source"] == "snapshot"
    target = by_gpu(body)[(HOT_2, "0", "3")]

    acked = orbitwatch("alerts", "ack", target["fingerprint"][:8], "--for", "1h", "--db", str(db))
    assert acked.returncode == 0, acked.stderr
    assert "spooled to" in acked.stdout
    assert "a daemon holds" in acked.stdout
    [spooled] = sorted(spool_dir(db).glob("*.json"))
    assert json.loads(spooled.read_text())["fingerprint"] == target["fingerprint"]  # prefix resolved
    unknown = orbitwatch("alerts", "ack", "0123456789abcdef", "--db", str(db))
    assert unknown.returncode == 0, unknown.stderr  # the daemon decides
    assert "warning: no live alert has fingerprint '0123456789abcdef' in the daemon's snapshot" in unknown.stdout
    assert by_gpu(listed(db))[(HOT_2, "0", "3")]["acked_until"] is None  # not applied yet

    result = apply_spool(spool_dir(db), daemon_like)  # what the daemon does between writes
    assert [(cmd.action, fps) for _, cmd, fps in result.applied] == [("ack", [target["fingerprint"]])]
    assert [reason for _, reason in result.rejected] == ["no live alert has fingerprint '0123456789abcdef'"]
    assert not list(spool_dir(db).glob("*.json"))
    rejected = sorted((spool_dir(db) / "rejected").iterdir())
    assert [p.suffix for p in rejected] == [".json", ".reason"]

    after = by_gpu(listed(db))  # still held: the snapshot, rewritten by the commit
    assert after[(HOT_2, "0", "3")]["acked_until"] is not None
    state = read_state(daemon_like._con)
    assert state.filter(state["fingerprint"] == target["fingerprint"])["acked_until"].item() is not None


def test_apply_spool_applies_in_order_and_rejects_bad_files_with_the_reason(db: Path, daemon_like: AlertTables) -> None:
    spool = spool_dir(db)
    fingerprint = daemon_like.state["fingerprint"][0]
    until = datetime.now(UTC) + timedelta(hours=1)
    first = spool_command(spool, AlertCommand("ack", fingerprint, until=until))
    second = spool_command(spool, AlertCommand("unack", fingerprint))
    (spool / "zz-garbage.json").write_text("{not json")
    (spool / "zz-unknown-action.json").write_text(json.dumps({"action": "snooze", "fingerprint": fingerprint}))
    (spool / "zz-no-until.json").write_text(json.dumps({"action": "shelve", "match": {"satellite": "sat-0001"}}))
    (spool / "writing.tmp").write_text("half written")  # not a command yet

    result = apply_spool(spool, daemon_like)
    assert [name for name, _, _ in result.applied] == [first.name, second.name]
    reasons = dict(result.rejected)
    assert reasons["zz-garbage.json"].startswith("unreadable JSON")
    assert reasons["zz-unknown-action.json"] == "unknown action 'snooze' (one of ack, unack, shelve, unshelve)"
    assert reasons["zz-no-until.json"] == "shelve needs 'until'"
    assert sorted(p.name for p in spool.iterdir()) == ["rejected", "writing.tmp"]
    for name, reason in reasons.items():
        assert (spool / "rejected" / name).exists()
        assert (spool / "rejected" / f"{name}.reason").read_text().strip() == reason
    state = read_state(daemon_like._con)
    assert state["acked_until"].null_count() == state.height  # ack then unack, in order
    assert apply_spool(spool, daemon_like).applied == []

    spool_command(spool, AlertCommand("ack", fingerprint, until=until))
    off = apply_spool(spool, None)  # a daemon without alerting
    assert off.applied == []
    assert "alerting is not enabled" in off.rejected[0][1]


UNKNOWN = "0123456789abcdef"


def test_every_spooled_command_is_audited_with_who_and_when_applied_or_rejected(
    db: Path, daemon_like: AlertTables
) -> None:
    spool = spool_dir(db)
    fingerprint = daemon_like.state["fingerprint"][0]
    until = datetime.now(UTC) + timedelta(hours=1)
    spool_command(spool, AlertCommand("ack", fingerprint, until=until, requested_by="ops-anna", via="web"))
    spool_command(spool, AlertCommand("unack", UNKNOWN, requested_by="ops-ben"))
    (spool / "zz-garbage.json").write_text("{not json")  # no command to audit: rejected/ keeps it
    apply_spool(spool, daemon_like)
    rows = daemon_like._con.execute(
        "SELECT requested_by, via, action, target, until, outcome, fingerprints, reason FROM alert_audit "
        "ORDER BY requested_at"
    ).fetchall()
    assert rows == [
        ("ops-anna", "web", "ack", fingerprint, until, "applied", [fingerprint], None),
        (
            "ops-ben",
            "cli",
            "unack",
            "0123456789abcdef",
            None,
            "rejected",
            [],
            "no live alert has fingerprint '0123456789abcdef'",
        ),
    ]


def test_a_direct_command_is_audited_with_its_change_and_a_refused_one_too(db: Path) -> None:
    con = open_database(db)
    try:
        fingerprint = read_state(con)["fingerprint"][0]
        until = datetime.now(UTC) + timedelta(hours=1)
        assert apply_direct(con, AlertCommand("ack", fingerprint, until=until, requested_by="ops")) == [fingerprint]
        with pytest.raises(CommandError):
            apply_direct(con, AlertCommand("unack", "ffffffff", requested_by="ops"))
        rows = con.execute("SELECT action, outcome, fingerprints FROM alert_audit ORDER BY requested_at").fetchall()
    finally:
        con.close()
    assert rows == [("ack", "applied", [fingerprint]), ("unack", "rejected", [])]


def test_commands_taken_over_http_are_checked_then_spooled_for_the_daemon(db: Path) -> None:
    take = alert_intake(db, wait_s=0.1)
    with pytest.raises(ServiceError) as bad:
        take({"action": "ack", "fingerprint": "abc", "requested_by": "ops"})  # no until
    assert bad.value.kind == "bad_request"
    with pytest.raises(ServiceError, match="requested_by"):
        take({"action": "unack", "fingerprint": "abc"})
    outcome, detail = take({"action": "unack", "fingerprint": "abc", "requested_by": "ops", "via": "web"})
    assert (outcome, detail) == ("spooled", "unack abc")  # no daemon here to apply it
    (spooled,) = spool_dir(db).glob("*.json")
    command = AlertCommand.from_json(json.loads(spooled.read_text()))
    assert (command.requested_by, command.via) == ("ops", "web")
    assert command.requested_at > datetime.now(UTC) - timedelta(minutes=1)  # set by the server


# ---- rules dry-run -------------------------------------------------------------------------------------


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Ten minutes of one rack: GPU 0 at 95 C for minutes 0-4 then 60 C; GPU 1 healthy (55 C) throughout."""
    path = tmp_path / "dry.duckdb"
    values = frames("sat-0003/rack-1", range(0, 600, 2), {0: lambda s: 95.0 if s < 300 else 60.0, 1: lambda s: 55.0})
    store(path, values, T0 + timedelta(minutes=10), alerts=False)
    return path


def test_dry_run_reports_what_fires_and_resolves_and_stays_silent_on_healthy_gpus(
    history: Path, tmp_path: Path
) -> None:
    rules = write_rules(tmp_path, RULES)
    result = orbitwatch("rules", "dry-run", str(rules), "--db", str(history), "--format", "json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert [(i["rule"], i["entity"], i["severity"], i["from"], i["to"]) for i in body["incidents"]] == [
        (
            "gpu_temperature",
            "sat-0003/rack-1 node 0 gpu 0",
            "critical",
            (T0 + timedelta(minutes=1)).isoformat(),  # for: 2m, held from minute 0
            (T0 + timedelta(minutes=6)).isoformat(),  # last held minute 4, keep_firing_for: 1m
        )
    ]
    assert body["totals"] == {
        "fired": 1,
        "resolved": 1,
        "firing_at_end": 0,
        "pending_at_end": 0,
        "per_rule": {"gpu_temperature": 1},
    }
    assert any("rack_health_critical" in note and "rack_now" in note for note in body["notes"])

    table = orbitwatch("rules", "dry-run", str(rules), "--db", str(history), "--step", "5m")
    assert table.returncode == 0, table.stderr
    assert "sat-0003/rack-1 node 0 gpu 0" in table.stdout
    assert "gpu 1" not in table.stdout
    assert "totals: 1 fired, 1 resolved, 0 still firing at the end, 0 pending at the end" in table.stdout
    assert "note: skipped (scope rack_now" in table.stdout

    window = orbitwatch(
        "rules", "dry-run", str(rules), "--db", str(history), "--from", (T0 + timedelta(minutes=2)).isoformat(),
        "--to", (T0 + timedelta(minutes=4)).isoformat(), "--format", "json",
    )  # fmt: skip
    assert window.returncode == 0, window.stderr
    inside = json.loads(window.stdout)
    assert inside["totals"]["firing_at_end"] == 1
    assert inside["incidents"][0]["to"] is None


def test_dry_run_needs_the_database_and_a_valid_rules_file(history: Path, tmp_path: Path) -> None:
    rules = write_rules(tmp_path, RULES)
    holder = open_database(history)
    try:
        held = orbitwatch("rules", "dry-run", str(rules), "--db", str(history))
    finally:
        holder.close()
    assert held.returncode == 1
    assert "stop the daemon, or copy the file" in held.stderr
    assert "Traceback" not in held.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: hot\n    scope: gpu\n    threshold: {column: temp_max, op: '>'}\n")
    invalid = orbitwatch("rules", "dry-run", str(bad), "--db", str(history))
    assert invalid.returncode == 1
    assert "rule 'hot' (#1): threshold" in invalid.stderr
    missing_column = tmp_path / "column.yaml"
    missing_column.write_text(
        "rules:\n  - name: x\n    scope: gpu\n    threshold: {column: nope, op: '>', warning: 1}\n"
    )
    wrong = orbitwatch("rules", "dry-run", str(missing_column), "--db", str(history))
    assert wrong.returncode == 1
    assert "nope" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_a_failed_store_of_alert_commands_names_the_file_and_keeps_the_state(
    daemon_like: AlertTables, db: Path
) -> None:
    before = daemon_like.state
    duplicated = pl.concat([before, before.head(1)])  # the fingerprint twice: the primary key refuses it
    with pytest.raises(StorageError, match=f"storing the alert commands in {db} failed and was rolled back"):
        daemon_like.replace_state(duplicated)
    assert daemon_like.state.equals(before)
