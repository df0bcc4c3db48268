"""The query service's HTTP edge on a real port: fuzzed against its OpenAPI description, and fed malformed,
stalled and idle connections as raw bytes over a socket."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import APIOperation, GenerationMode

from orbitwatch.alert_intake import alert_intake
from orbitwatch.discovery import discovery_path
from orbitwatch.query_service import QueryService
from storage.database import open_database
from storage.guarded import QueryLimits

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT_S = 1  # query.request_timeout_s of the service under test
MAX_CONNECTIONS = 6
MAX_BODY = 4096
FUZZ_CHECKS = schemathesis.Config.from_dict(
    {
        "checks": {
            # Schema-valid is not valid SQL ("sql": "0" is a 400 query error): positive data need not get a 2xx.
            "positive_data_acceptance": {"enabled": False},
            # An invalid body may also be too large for the small limit here: 413 is a fine refusal.
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429"]
            },
            "max_response_time": 5,
        }
    }
)
STATUS = {  # the shape of orbitwatch.daemon.Daemon.status
    "broker": {
        "servers": "127.0.0.1:9092",
        "reachable": True,
        "since": "2026-12-04T10:00:00+00:00",
        "outage_s": None,
        "outages": 0,
    },
    "topic": "rack-telemetry",
    "assigned": [0],
    "partitions": [
        {"partition": 0, "next_offset": 42, "lag": 0, "assigned": True},
        {"partition": 1, "next_offset": 7, "lag": None, "assigned": False},
    ],
    "last_commit": "2026-12-04T10:00:01+00:00",
    "messages_committed": 42,
    "backlogged": False,
}


@dataclass(frozen=True)
class Live:
    """A running query service: its URL, host and port."""

    url: str
    host: str
    port: int


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A query service with a token, a status and small edge limits, on a real port over a small DuckDB file."""
    con = open_database(tmp_path / "orbitwatch.duckdb", sandbox=[tmp_path / "orbitwatch.duckdb.archive"])
    con.execute("CREATE TABLE ledger (batch INTEGER, side VARCHAR, amount INTEGER)")
    con.execute("INSERT INTO ledger SELECT range, 'credit', 1 FROM range(10)")
    service = QueryService(
        con,
        QueryLimits(timeout_s=1.0, max_rows=1_000, max_bytes=1_000_000),
        token=TOKEN,
        status=lambda: STATUS,
        alert_commands=alert_intake(tmp_path / "orbitwatch.duckdb", wait_s=0.1),  # no daemon: spooled at most
        request_timeout_s=TIMEOUT_S,
        max_connections=MAX_CONNECTIONS,
        max_body_bytes=MAX_BODY,
    )
    port = service.serve("127.0.0.1", 0, discovery_path(tmp_path / "orbitwatch.duckdb"))
    try:
        yield Live(f"http://127.0.0.1:{port}", "127.0.0.1", port)
    finally:
        service.stop()
        con.close()


def test_every_operation_holds_to_its_openapi_description(live: Live) -> None:
    """Schemathesis generates valid and invalid requests for every operation: no 5xx, every answer as described
    (invalid ones refused with a 4xx), each quick."""
    document = httpx.get(f"{live.url}/v1/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document, config=FUZZ_CHECKS)
    labels = [f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item if m != "parameters"]
    assert sorted(labels) == [
        "GET /v1/health",
        "GET /v1/openapi.json",
        "GET /v1/query",
        "GET /v1/saved",
        "GET /v1/saved/{name}",
        "GET /v1/status",
        "POST /v1/alerts/commands",
        "POST /v1/query",
        "POST /v1/saved/{name}",
    ]
    operations = [schema[label.split(" ")[1]][label.split(" ")[0]] for label in labels]
    calls: list[str] = []
    for operation, mode in itertools.product(operations, GenerationMode):
        if mode is GenerationMode.NEGATIVE and not (list(operation.iter_parameters()) or operation.body):
            continue  # nothing to get wrong

        @hypothesis.settings(
            max_examples=12,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def answers_as_described(case: schemathesis.Case[APIOperation[Any, Any, Any, Any]]) -> None:
            started = time.perf_counter()
            calls.append(case.operation.label)
            case.call_and_validate(base_url=live.url, headers=AUTH, timeout=10)
            assert time.perf_counter() - started < 5, f"{case.method} {case.formatted_path} took too long"

        answers_as_described()
    assert set(calls) == {op.label for op in operations}
    assert len(calls) > 5 * 12, "those with inputs with many valid and invalid ones"


def _exchange(live: Live, request: bytes, timeout_s: float = 5.0) -> bytes:
    """Send raw ``request`` bytes; everything the server sends until it closes the connection."""
    with socket.create_connection((live.host, live.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        return _read_to_close(sock)


def _read_to_close(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _error_of(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower()
    return status, json.loads(body)


def _post(body_headers: str, body: bytes = b"") -> bytes:
    return (
        "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\n{body_headers}\r\n"
    ).encode() + body


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " 12x"])
def test_a_malformed_content_length_is_a_400_error_object_and_no_traceback(
    live: Live, length: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, error = _error_of(_exchange(live, _post(f"Content-Length: {length}\r\n", b'{"sql": "SELECT 1"}')))
    assert (status, error["error"]) == (400, "bad_request")
    assert "Content-Length" in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert httpx.get(f"{live.url}/v1/health").status_code == 200


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"sql": 7}', b'{"sql": "SELECT 1", "format": "xml"}'])
def test_a_malformed_body_is_a_400_error_object(live: Live, body: bytes) -> None:
    status, error = _error_of(_exchange(live, _post(f"Content-Length: {len(body)}\r\nConnection: close\r\n", body)))
    assert (status, error["error"]) == (400, "bad_request")


def test_a_body_over_the_limit_is_a_413_before_it_is_read(live: Live) -> None:
    answer = _exchange(live, _post(f"Content-Length: {MAX_BODY * 10}\r\n"))  # the body never comes
    status, error = _error_of(answer)
    assert (status, error["error"]) == (413, "too_large")


def test_a_body_shorter_than_declared_is_closed_after_the_request_timeout(live: Live) -> None:
    started = time.perf_counter()
    answer = _exchange(live, _post("Content-Length: 100\r\n", b'{"sql": "SELECT 1"'), timeout_s=10)
    waited = time.perf_counter() - started
    assert answer == b""  # closed without an answer: nothing complete was asked
    assert TIMEOUT_S <= waited < TIMEOUT_S + 4  # the timeout, plus waitress's idle sweep (1 s) and poll (1 s)


def test_idle_connections_cost_no_thread_each_and_are_closed_after_the_timeout(live: Live) -> None:
    threads_before = threading.active_count()
    idle = [socket.create_connection((live.host, live.port), timeout=15) for _ in range(3 * MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)
        assert threading.active_count() <= threads_before  # the listener thread and its pool serve them all
        started = time.perf_counter()
        for sock in idle:  # the limit's worth at a time: the others wait in the backlog, then idle out too
            assert _read_to_close(sock) == b""
        assert time.perf_counter() - started < 3 * (TIMEOUT_S + 3)
    finally:
        for sock in idle:
            sock.close()
    assert httpx.get(f"{live.url}/v1/health").status_code == 200


def test_keep_alive_serves_several_requests_on_one_connection(live: Live) -> None:
    with httpx.Client(base_url=live.url, headers=AUTH) as client:
        for n in range(3):
            answer = client.post("/v1/query", json={"sql": "SELECT $n AS n", "params": {"n": n}})
            assert answer.json() == [{"n": n}]
        assert client.get("/v1/status").json() == STATUS


def test_head_answers_headers_only_and_keep_alive_goes_on(live: Live) -> None:
    with socket.create_connection((live.host, live.port), timeout=5) as sock:
        sock.sendall(b"HEAD /v1/health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        received = sock.recv(65536)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), received
    assert b"content-length: 16" in head.lower(), received  # the GET's length, without its body
    assert rest.startswith(b"HTTP/1.1 200"), f"the HEAD answer carried a body into the next answer: {received!r}"
    assert rest.endswith(b'{"status": "ok"}'), received
    answer = httpx.head(f"{live.url}/v1/query", params={"sql": "SELECT 1"}, headers=AUTH)
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, POST")  # a query is not run for HEAD


def test_a_wrong_method_names_the_allowed_ones(live: Live) -> None:
    answer = httpx.delete(f"{live.url}/v1/saved", headers=AUTH)
    assert (answer.status_code, answer.headers["allow"], answer.json()["error"]) == (405, "GET", "method_not_allowed")


def test_a_deeply_nested_body_is_a_400_not_a_traceback(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    body = b"[" * 2000 + b"]" * 2000  # deeper than Python's recursion limit, within the body limit
    status, error = _error_of(_exchange(live, _post(f"Content-Length: {len(body)}\r\nConnection: close\r\n", body)))
    assert (status, error["error"]) == (400, "bad_request")
    assert not [r for r in caplog.records if r.exc_info]


def test_past_the_connection_limit_a_client_waits_for_a_free_one(live: Live) -> None:
    with httpx.Client(base_url=live.url) as client:
        started = time.perf_counter()
        assert client.get("/v1/health").status_code == 200
        assert time.perf_counter() - started < 0.5  # under the limit: at once
    idle = [socket.create_connection((live.host, live.port), timeout=15) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        started = time.perf_counter()
        assert httpx.get(f"{live.url}/v1/health", timeout=15).status_code == 200
        waited = time.perf_counter() - started
        assert waited >= TIMEOUT_S * 0.8, f"served after {waited:.2f} s: the limit let a connection past it"
    finally:
        for sock in idle:
            sock.close()
