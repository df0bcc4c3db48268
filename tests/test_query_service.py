"""The query service over real HTTP and a real DuckDB file: formats, guards, tokens, snapshots."""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import duckdb
import httpx
import polars as pl
import pytest

from orbitwatch.discovery import discovery_path
from orbitwatch.errors import ConfigError, DiscoveryFileError, QueryServiceError
from orbitwatch.query_client import QueryClient, parse_server_timing
from orbitwatch.query_http import server_timing
from orbitwatch.query_service import QueryService
from orbitwatch.result_formats import CONTENT_TYPES, WIRE_FORMATS, decode
from orbitwatch.services import QueryEndpoint
from storage import guarded
from storage.database import open_database
from storage.errors import QueryRefusedError
from storage.guarded import QueryLimits

LIMITS = QueryLimits(timeout_s=1.0, max_rows=1_000, max_bytes=1_000_000)
PHASES = ("queue", "pace", "guard", "begin", "execute", "execute_cpu", "convert", "commit", "encode")


@pytest.fixture
def history(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A migrated history file, sandboxed as the daemon opens it, with a small table of its own."""
    archive = tmp_path / "orbitwatch.duckdb.archive"
    con = open_database(tmp_path / "orbitwatch.duckdb", sandbox=[archive])
    con.execute("CREATE TABLE ledger (batch INTEGER, side VARCHAR, amount INTEGER)")
    con.execute("INSERT INTO ledger SELECT range, 'credit', 1 FROM range(10)")
    yield con
    con.close()


def serve(con: duckdb.DuckDBPyConnection, tmp_path: Path, **options: object) -> tuple[QueryService, str]:
    """A running service on a free port, and its URL."""
    service = QueryService(con, options.pop("limits", LIMITS), **options)  # type: ignore[arg-type]
    port = service.serve("127.0.0.1", 0, discovery_path(tmp_path / "orbitwatch.duckdb"))
    return service, f"http://127.0.0.1:{port}"


def test_every_format_carries_the_same_rows(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    service, url = serve(history, tmp_path)
    client = QueryClient(url)
    sql = "SELECT batch, side, amount FROM ledger WHERE batch < $n ORDER BY batch"
    try:
        expected = pl.DataFrame({"batch": list(range(5)), "side": ["credit"] * 5, "amount": [1] * 5})
        for fmt in WIRE_FORMATS:
            frame = decode(client.fetch(sql, params={"n": 5}, fmt=fmt), fmt)  # type: ignore[arg-type]
            assert frame.rows() == expected.rows(), fmt
        assert client.query(sql, {"n": 5}).schema["batch"] == pl.Int32  # Arrow keeps DuckDB's types
        csv = httpx.get(f"{url}/v1/query", params={"sql": "SELECT 1 AS one", "format": "csv"})
        assert csv.text == "one\n1\n"
        assert csv.headers["content-type"].startswith("text/csv")
    finally:
        client.close()
        service.stop()


@pytest.mark.parametrize(
    ("sql", "kind", "says"),
    [
        ("DELETE FROM ledger", "read_only", "DELETE statement"),
        ("CREATE TABLE x (a INTEGER)", "read_only", "CREATE statement"),
        ("SELECT 1; DROP TABLE ledger", "read_only", "exactly one statement"),
        ("SET threads = 8", "read_only", "SET statement"),
        ("ATTACH '/tmp/other.duckdb' AS other", "read_only", "ATTACH statement"),
        ("COPY ledger TO '/tmp/ledger.csv'", "read_only", "COPY statement"),
        ("SELECT * FROM checkpoint()", "read_only", "checkpoint() is not allowed"),
        ("SELECT nextval('no_such_sequence')", "query", "no_such_sequence"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file_access", "/etc/passwd"),
        ("SELECT * FROM read_text('/etc/hostname')", "file_access", "/etc/hostname"),
        ("SELECT * FROM glob('/etc/*')", "file_access", "/etc/*"),
        ("SELECT count(*) FROM range(100000000000) a, range(100) b", "timeout", "cancelled after 1 s"),
        ("SELECT * FROM range(5000)", "too_large", "more than 1,000 rows"),
        ("SELECT repeat('x', 20000) FROM range(100)", "too_large", "larger than 1,000,000 bytes"),
        ("SELECT no_such_column FROM ledger", "query", 'column "no_such_column"'),
    ],
)
def test_guards_refuse_with_a_clear_message(
    history: duckdb.DuckDBPyConnection, tmp_path: Path, sql: str, kind: str, says: str
) -> None:
    service, url = serve(history, tmp_path)
    client = QueryClient(url)
    try:
        with pytest.raises(QueryServiceError) as refused:
            client.query(sql)
        assert refused.value.kind == kind
        assert says in str(refused.value)
        assert history.execute("SELECT count(*) FROM ledger").fetchall() == [(10,)]  # nothing changed
        assert client.query("SELECT count(*) AS n FROM ledger")["n"].to_list() == [10]  # the slot is reusable
    finally:
        client.close()
        service.stop()


def test_token_is_required_when_set(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    service, url = serve(history, tmp_path, token="s3cret")
    try:
        for token in (None, "wrong"):
            with QueryClient(url, token) as client, pytest.raises(QueryServiceError) as refused:
                client.query("SELECT 1")
            assert (refused.value.kind, refused.value.status) == ("unauthorized", 401)
        with QueryClient(url, "s3cret") as client:
            assert client.query("SELECT 1 AS one")["one"].to_list() == [1]
        assert httpx.get(f"{url}/v1/health").status_code == 200  # health needs no token
    finally:
        service.stop()


def test_saved_queries_by_name_with_typed_parameters(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    service, url = serve(history, tmp_path)
    client = QueryClient(url)
    try:
        assert client.saved("telemetry-gaps", {"limit": 5}).height == 0  # an empty history: no gaps
        listed = httpx.get(f"{url}/v1/saved").json()
        assert {q["name"] for q in listed} >= {"hottest-racks", "rising-ecc", "tenant-usage"}
        with pytest.raises(QueryServiceError, match="no saved query 'nope'"):
            client.saved("nope")
        with pytest.raises(QueryServiceError, match="hours must be int"):
            client.saved("hottest-racks", {"hours": "six"})
        with pytest.raises(QueryServiceError, match="needs --param rack"):
            client.saved("rack-health-changes")
    finally:
        client.close()
        service.stop()


def test_each_query_sees_whole_transactions_while_a_writer_commits(
    history: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """A writer moves amounts between two rows in transactions; every query's total is the same."""
    service, url = serve(history, tmp_path, max_concurrent=2)
    writer = history.cursor()
    writer.execute("CREATE TABLE accounts (name VARCHAR, balance INTEGER)")
    writer.execute("INSERT INTO accounts VALUES ('a', 1000), ('b', 0)")
    stop = threading.Event()

    def transfer() -> None:
        while not stop.is_set():
            writer.execute("BEGIN TRANSACTION")
            writer.execute("UPDATE accounts SET balance = balance - 1 WHERE name = 'a'")
            writer.execute("INSERT INTO ledger VALUES (-1, 'debit', 1)")
            writer.execute("UPDATE accounts SET balance = balance + 1 WHERE name = 'b'")
            writer.execute("COMMIT")

    thread = threading.Thread(target=transfer)
    thread.start()
    client = QueryClient(url)
    sql = """SELECT (SELECT sum(balance) FROM accounts) AS total, (SELECT balance FROM accounts WHERE name = 'b') AS b,
        (SELECT count(*) FROM ledger WHERE side = 'debit') AS debits"""
    try:
        seen = [client.query(sql).row(0) for _ in range(50)]
    finally:
        stop.set()
        thread.join()
        client.close()
        service.stop()
    assert {total for total, _, _ in seen} == {1000}
    assert all(b == debits for _, b, debits in seen)  # the ledger row and the balance: same transaction
    assert len({b for _, b, _ in seen}) > 1  # the writer did commit meanwhile


def test_discovery_file_points_at_the_running_service(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    db = tmp_path / "orbitwatch.duckdb"
    service, url = serve(history, tmp_path)
    try:
        client = QueryClient.discover(db)
        assert client is not None
        with client:
            assert client.url == url
            assert client.health()
    finally:
        service.stop()
    assert QueryClient.discover(db) is None  # removed on stop
    discovery_path(db).write_text('{"url": "http://127.0.0.1:1", "pid": 999999999}')
    assert QueryClient.discover(db) is None  # a dead daemon's stale file is ignored


def test_a_busy_service_says_so(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """With every slot taken for longer than the timeout, the next query is refused as busy."""
    limits = QueryLimits(timeout_s=0.3, max_rows=10, max_bytes=10_000)
    service, url = serve(history, tmp_path, max_concurrent=1, limits=limits, queue_timeout_s=0.3)
    try:
        with service._cursor():  # the only slot, held as a long query would
            assert _kind(QueryClient(url), "SELECT 1") == "busy"
        assert _kind(QueryClient(url), "SELECT 1") == "ok"
    finally:
        service.stop()


def _kind(client: QueryClient, sql: str) -> str:
    with client:
        try:
            client.query(sql)
        except QueryServiceError as exc:
            return exc.kind
    return "ok"


def test_queries_are_paced_to_their_share_while_the_daemon_catches_up(
    history: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """With a backlog and backlog_share 0.5, a query of t seconds delays the next start by t; without, no wait."""
    backlog = threading.Event()
    service, url = serve(history, tmp_path, backlog_share=0.5, backlogged=backlog.is_set, queue_timeout_s=5.0)
    slow = "SELECT count(*) FROM range(60000000) a WHERE a % 7 = 3"
    try:
        with QueryClient(url) as client:
            backlog.set()
            first = time.perf_counter()
            client.query(slow)
            took = time.perf_counter() - first
            client.query("SELECT 1")  # waits for the pace: about as long as the slow query took
            paced = time.perf_counter() - first
            assert paced >= 2 * took * 0.9
            backlog.clear()
            client.query(slow)
            unpaced = time.perf_counter()
            client.query("SELECT 1")
            assert time.perf_counter() - unpaced < took / 2  # caught up: no pacing
    finally:
        service.stop()


def test_each_answer_says_where_its_time_went(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Server-Timing and the metrics observer get the same phases: a query kept waiting for the only slot
    shows it as ``queue``, one paced behind a slow query as ``pace``, and a slow query's time is DuckDB's."""
    backlog = threading.Event()
    observed: list[dict[str, float]] = []
    service, url = serve(
        history,
        tmp_path,
        max_concurrent=1,
        backlog_share=0.5,
        backlogged=backlog.is_set,
        queue_timeout_s=5.0,
        observe_phases=lambda phases: observed.append(dict(phases)),
    )
    slow = "SELECT count(*) FROM range(60000000) a WHERE a % 7 = 3"
    history.execute("SET threads = 1")  # as the daemon runs DuckDB while processing is on

    def timed(sql: str) -> dict[str, float]:
        response = httpx.post(f"{url}/v1/query", json={"sql": sql, "format": "json"}, timeout=30)
        assert response.status_code == 200, response.text
        return parse_server_timing(response.headers["Server-Timing"])

    try:
        phases = timed(slow)
        assert list(phases) == [*PHASES]
        assert phases == pytest.approx(observed[-1], abs=1e-5)  # the header's ms have 3 decimals
        wall = sum(seconds for name, seconds in phases.items() if name != "execute_cpu")  # the others add up
        assert phases["execute"] > 0.5 * wall  # the time went to DuckDB...
        assert 0.5 * phases["execute"] < phases["execute_cpu"] <= phases["execute"] * 1.05  # ...on this thread
        with service._cursor():  # the only slot, held for a while by "another query"
            release = threading.Timer(0.4, lambda: None)
            waiter = threading.Thread(target=lambda: observed.append(timed("SELECT 1")))
            waiter.start()
            release.start()
            release.join()
        waiter.join()
        assert observed[-1]["queue"] >= 0.3
        backlog.set()
        took = timed(slow)["execute"]
        # share 0.5: the next start waits about as long as the slow query ran, less what passed between the
        # end of its execution and the next request's arrival (encode, HTTP both ways: tens of ms when loaded)
        assert timed("SELECT 1")["pace"] >= 0.5 * took
    finally:
        service.stop()


def test_server_timing_reads_back_what_the_service_wrote() -> None:
    header = server_timing({"queue": 0.0, "execute": 0.012345, "encode": 2.5})
    assert header == "queue;dur=0.000, execute;dur=12.345, encode;dur=2500.000"
    assert parse_server_timing(header) == pytest.approx({"queue": 0.0, "execute": 0.012345, "encode": 2.5})
    assert parse_server_timing('cache;desc="hit", db;dur=x, app;dur=5') == {"app": 0.005}
    assert parse_server_timing(None) == {}


def test_a_turn_that_never_comes_is_busy_not_a_hang(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    service, url = serve(history, tmp_path, backlog_share=0.01, backlogged=lambda: True, queue_timeout_s=0.5)
    try:
        with QueryClient(url) as client:
            client.query("SELECT count(*) FROM range(30000000) a WHERE a % 7 = 3")  # charges 99 times its time
            with pytest.raises(QueryServiceError) as refused:
                client.query("SELECT 1")
            assert refused.value.kind == "busy"
            assert "query.backlog_share" in str(refused.value)
    finally:
        service.stop()


def test_an_unexpected_error_is_a_500_for_that_request_only(
    history: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, url = serve(history, tmp_path)

    def broken(sql: str, parameters: object = None) -> object:
        raise RuntimeError("a bug")

    try:
        with QueryClient(url) as client:
            monkeypatch.setattr(service, "run", broken)
            with pytest.raises(QueryServiceError) as failed:
                client.query("SELECT 1")
            assert (failed.value.kind, failed.value.status) == ("internal", 500)
            monkeypatch.undo()
            assert client.query("SELECT 1 AS one")["one"].to_list() == [1]  # the service goes on
    finally:
        service.stop()


@pytest.mark.parametrize(
    "sql",
    [
        "PIVOT ledger ON side USING sum(amount) GROUP BY batch ORDER BY batch",  # DuckDB: a MULTI statement
        "WITH p AS (PIVOT ledger ON side USING sum(amount)) SELECT * FROM p",
        "PIVOT ledger ON side IN ('credit', 'debit') USING sum(amount)",  # DuckDB: a SELECT
        "UNPIVOT (SELECT 1 AS credit, 2 AS debit) ON credit, debit INTO NAME side VALUE amount",
    ],
)
def test_pivot_and_unpivot_are_read_queries(history: duckdb.DuckDBPyConnection, tmp_path: Path, sql: str) -> None:
    service, url = serve(history, tmp_path)
    try:
        with QueryClient(url) as client:
            assert client.query(sql).height > 0
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("PIVOT (SELECT * FROM checkpoint()) ON database_name USING count(*)", "checkpoint() is not allowed"),
        ('PIVOT (FROM "FORCE_CHECKPOINT" ()) ON database_name USING count(*)', "force_checkpoint() is not allowed"),
        ("PIVOT ledger ON side USING sum(amount); DELETE FROM ledger", "exactly one statement"),
        ("COPY (PIVOT ledger ON side USING sum(amount)) TO 'out.parquet'", "this is a MULTI statement"),
        ("CREATE TEMP TABLE ledger AS PIVOT ledger ON side USING sum(amount)", "this is a MULTI statement"),
        ("/* a */ INSERT INTO ledger FROM (PIVOT ledger ON side USING sum(amount))", "this is a MULTI statement"),
    ],
)
def test_a_pivot_still_passes_the_guards(
    history: duckdb.DuckDBPyConnection, tmp_path: Path, sql: str, says: str
) -> None:
    service, url = serve(history, tmp_path)
    try:
        with QueryClient(url) as client, pytest.raises(QueryServiceError) as refused:
            client.query(sql)
        assert (refused.value.kind, says in str(refused.value)) == ("read_only", True)
        assert history.execute("SELECT count(*) FROM ledger").fetchall() == [(10,)]
        with QueryClient(url) as client:  # no cursor of the service sees a table of the refused statement
            for _ in range(3):
                assert client.query("SELECT count(*) AS n FROM ledger")["n"].to_list() == [10]
        assert not (tmp_path / "out.parquet").exists()
    finally:
        service.stop()


def test_status_is_the_daemons_document_behind_the_token(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    document = {"broker": {"reachable": False, "since": None, "outage_s": 12.5}, "partitions": [], "backlogged": True}
    service, url = serve(history, tmp_path, token="s3cret", status=lambda: document)
    try:
        assert httpx.get(f"{url}/v1/status").status_code == 401
        answer = httpx.get(f"{url}/v1/status", headers={"Authorization": "Bearer s3cret"})
        assert (answer.status_code, answer.json()) == (200, document)
    finally:
        service.stop()
    service, url = serve(history, tmp_path)  # not part of a daemon: no status
    try:
        answer = httpx.get(f"{url}/v1/status")
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
    finally:
        service.stop()


def test_the_openapi_description_is_served_without_a_token_as_shipped(
    history: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    service, url = serve(history, tmp_path, token="s3cret")
    try:
        answer = httpx.get(f"{url}/v1/openapi.json")
        assert answer.status_code == 200
        shipped = json.loads(resources.files("orbitwatch").joinpath("openapi.json").read_text())
        assert answer.json() == shipped
        assert set(shipped["paths"]) == {
            "/v1/health",
            "/v1/openapi.json",
            "/v1/status",
            "/v1/alerts/commands",
            "/v1/query",
            "/v1/saved",
            "/v1/saved/{name}",
        }
        assert set(shipped["paths"]["/v1/query"]["post"]["responses"]["200"]["content"]) == {
            CONTENT_TYPES[fmt].split(";")[0] for fmt in WIRE_FORMATS
        }
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("DELETE", "/v1/query", 405, "method_not_allowed"),
        ("POST", "/v1/saved", 405, "method_not_allowed"),
        ("PUT", "/v1/saved/hottest-racks", 405, "method_not_allowed"),
        ("GET", "/v2/query", 404, "not_found"),
        ("GET", "/v1/saved/", 404, "not_found"),
    ],
)
def test_unknown_endpoints_and_methods_are_error_objects(
    history: duckdb.DuckDBPyConnection, tmp_path: Path, method: str, path: str, status: int, kind: str
) -> None:
    service, url = serve(history, tmp_path)
    try:
        answer = httpx.request(method, f"{url}{path}")
        assert (answer.status_code, answer.json()["error"]) == (status, kind)
    finally:
        service.stop()


def test_a_discovery_file_that_cannot_be_written_is_named_not_a_port_problem(
    history: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    discovery = not_a_directory / "orbitwatch.duckdb.query.json"
    endpoint = QueryEndpoint(QueryService(history, LIMITS), "127.0.0.1", 0, discovery)
    with pytest.raises(DiscoveryFileError) as failed:
        endpoint.start()
    assert str(failed.value).startswith(f"cannot write {discovery} ")
    assert "Not a directory" in str(failed.value)
    assert "query.port" not in str(failed.value)
    endpoint.stop()  # the service listens no more and gives its cursors back


def test_a_full_disk_for_the_discovery_file_is_named_as_such(
    history: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    discovery = discovery_path(tmp_path / "orbitwatch.duckdb")
    with pytest.raises(DiscoveryFileError, match=f"cannot write {discovery} .*: No space left on device"):
        QueryEndpoint(QueryService(history, LIMITS), "127.0.0.1", 0, discovery).start()


def test_a_port_in_use_is_a_config_error_naming_query_port(history: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = QueryEndpoint(QueryService(history, LIMITS), "127.0.0.1", port, discovery_path(tmp_path / "x"))
        with pytest.raises(ConfigError, match=f"query.port: cannot listen on 127.0.0.1:{port}: Address already in use"):
            endpoint.start()


def test_a_statement_found_read_only_is_not_parsed_again(
    history: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict depends on the text alone: a repeated statement skips the parse, a refused one is refused
    every time."""
    sql = "SELECT count(*) AS n FROM range(3) -- verdict cache test"
    guarded.check_read_only(history.cursor(), sql)

    def no_parse(_sql: str) -> list[object]:
        raise AssertionError("parsed again")

    monkeypatch.setattr(duckdb, "extract_statements", no_parse)
    guarded.check_read_only(history.cursor(), sql)
    monkeypatch.undo()
    for _ in range(2):
        with pytest.raises(QueryRefusedError, match="read statements"):
            guarded.check_read_only(history.cursor(), "CREATE TABLE t AS SELECT 1")
