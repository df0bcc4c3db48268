"""The daemon's query service: read-only SQL over HTTP on consistent snapshots while the writer goes on.

DuckDB allows one process per database file, so while the daemon runs nobody else can open it; the daemon
therefore answers queries itself, each on its own cursor of its connection in a read-only transaction (one
snapshot per query: whole batches or nothing). ``storage.guarded`` holds the guards. Tables whose old days
moved to the Parquet archive are read through union views (``storage.archive.ArchiveViews``), so a query
does not care where its rows are.

Endpoints (JSON errors ``{"error": kind, "message": ...}``):

- ``POST /v1/query`` ``{"sql": "...", "params": {"name": value}, "format": "json|csv|arrow|parquet"}``;
  also ``GET /v1/query?sql=...&format=csv`` for curl and browsers;
- ``GET /v1/saved`` lists the saved queries; ``POST /v1/saved/NAME`` ``{"params": {...}, "format": ...}`` or
  ``GET /v1/saved/NAME?hours=6&format=csv`` runs one;
- ``POST /v1/alerts/commands`` ``{"action": "ack", "fingerprint": "...", "until": "...", "requested_by":
  "..."}``: an operator's ack/shelve/unack/unshelve, spooled for the daemon like ``orbitwatch alerts`` does;
  200 once applied, 202 if still spooled after a few seconds, 409 when the daemon rejects it;
- ``GET /v1/status``: the daemon's state (broker, partitions' offsets and lag, last commit, backlog);
- ``GET /v1/health``: liveness, and ``GET /v1/openapi.json``: the OpenAPI description, both without a token.

The HTTP edge is waitress (``orbitwatch.http_edge``): idle and stalled connections are closed after
``query.request_timeout_s``, at most ``query.max_connections`` are open, a body over ``query.max_body_bytes``
gets 413, and a malformed request a 4xx error object, never a traceback.

Decisions: ingestion comes first. Queries run at a lower scheduling priority (``query.nice``, per thread on
Linux) and at most ``query.max_concurrent`` at once; while the daemon catches up on a backlog (its batches
are full), they are also paced to ``query.backlog_share`` of the time (a query of t seconds delays the next
start by t * (1 - share) / share), so operators' queries slow down before ingestion does. A query waits for
its turn up to ``query.queue_timeout_s``, then gets ``busy`` (503). With ``query.token`` set,
every endpoint but health and the OpenAPI description needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import duckdb

from orbitwatch.discovery import url_host, write_discovery
from orbitwatch.errors import DiscoveryFileError, ServiceError
from orbitwatch.http_edge import HttpEdge, HttpLimits
from orbitwatch.query_http import (
    Answer,
    PhaseObserver,
    Request,
    allow,
    error_answer,
    is_parameters,
    json_answer,
    openapi,
    result_answer,
    saved_list,
    wire_format,
)
from orbitwatch.result_formats import CONTENT_TYPES
from storage.archive import ArchiveViews
from storage.errors import QueryError, QueryRefusedError
from storage.guarded import GuardedResult, Parameters, QueryLimits, run_guarded
from storage.saved_queries import SAVED_QUERIES, bind

log = logging.getLogger(__name__)
SPARE_THREADS = 4  # HTTP worker threads beyond query.max_concurrent: for health, status and queries waiting a turn
AlertCommands = Callable[[dict[str, Any]], tuple[str, str]]
"""Hands an operator's alert command (the JSON object of ``alerting.commands.AlertCommand``) to the daemon:
``("applied" | "spooled", detail)``, or raises ``ServiceError`` (``bad_request``, ``rejected``)."""
Observer = Callable[[str, float], None]
"""Called with each query's outcome (``ok`` or an error kind) and its seconds, e.g. for metrics."""


class QueryService:
    """Runs guarded queries on a pool of cursors of the daemon's connection and serves them over HTTP."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        limits: QueryLimits,
        *,
        max_concurrent: int = 2,
        token: str | None = None,
        nice: int = 0,
        views: ArchiveViews | None = None,
        observe: Observer | None = None,
        observe_phases: PhaseObserver | None = None,
        queue_timeout_s: float = 120.0,
        backlog_share: float = 1.0,
        backlogged: Callable[[], bool] = lambda: False,
        status: Callable[[], Mapping[str, object]] | None = None,
        alert_commands: AlertCommands | None = None,
        request_timeout_s: int = 30,
        max_connections: int = 64,
        max_body_bytes: int = 1024 * 1024,
    ) -> None:
        self.limits = limits
        self._token = token
        self._nice = nice
        self._views = views
        self._queue_timeout_s = queue_timeout_s
        self._share = backlog_share
        self._backlogged = backlogged
        self._status = status
        self._alert_commands = alert_commands
        self._http_limits = HttpLimits(
            request_timeout_s, max_connections, max_body_bytes, max_concurrent + SPARE_THREADS
        )
        self._paced_until = 0.0  # monotonic: while backlogged, no query starts before it
        self._observe = observe
        self._observe_phases = observe_phases
        self._cursors: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue()
        self._all = [con.cursor() for _ in range(max_concurrent)]  # made before any other thread uses con
        for cursor in self._all:
            self._cursors.put(cursor)
        self._busy: set[duckdb.DuckDBPyConnection] = set()
        self._lock = threading.Lock()
        self._edge: HttpEdge | None = None
        self._discovery: Path | None = None

    # -- queries -----------------------------------------------------------------------------------------

    def run(self, sql: str, parameters: Parameters | None = None) -> GuardedResult:
        """One guarded query on a free cursor (waits up to the timeout for one, then ``busy``); its phases
        begin with ``queue`` (waiting for a cursor) and ``pace`` (waiting for its share of a backlog)."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            with self._cursor() as cursor:
                slot = time.perf_counter()
                self._wait_for_pace(started + self._queue_timeout_s)
                executing = time.perf_counter()
                try:
                    prepare = self._views.prepare if self._views is not None else None
                    result = run_guarded(cursor, sql, parameters, self.limits, prepare)
                    waits = {"queue": slot - started, "pace": executing - slot}
                    return dataclasses.replace(result, phases={**waits, **result.phases})
                except Exception:
                    if self._views is not None:
                        self._views.forget(cursor)  # rolled back, and the archive's views with it
                    raise
                finally:
                    self._pace(time.perf_counter() - executing)
        except QueryRefusedError as exc:
            outcome = exc.kind
            raise
        except QueryError:
            outcome = "query"
            raise
        except ServiceError as exc:
            outcome = exc.kind
            raise
        finally:
            if self._observe is not None:
                self._observe(outcome, time.perf_counter() - started)

    def run_saved(self, name: str, given: dict[str, str]) -> GuardedResult:
        """A saved query by name with ``given`` parameters (typed by the saved query's definition)."""
        saved = SAVED_QUERIES.get(name)
        if saved is None:
            raise ServiceError("not_found", f"no saved query {name!r} (saved: {', '.join(SAVED_QUERIES)})")
        try:
            values = bind(saved, given)
        except QueryError as exc:
            raise ServiceError("bad_request", str(exc)) from exc
        return self.run(saved.sql, values)

    def _wait_for_pace(self, deadline: float) -> None:
        """While the daemon catches up on a backlog, start only when the queries' share of time allows."""
        while self._share < 1.0 and self._backlogged():
            with self._lock:
                wait = self._paced_until - time.monotonic()
            if wait <= 0:
                return
            if time.perf_counter() + wait > deadline:
                raise ServiceError(
                    "busy",
                    f"the daemon is catching up on a backlog and queries get {self._share:.0%} of the time "
                    f"(query.backlog_share): no turn within {self._queue_timeout_s:g} s (query.queue_timeout_s)",
                )
            time.sleep(min(wait, 0.25))

    def _pace(self, seconds: float) -> None:
        """Charge a query's ``seconds``: the next may start after ``seconds * (1 - share) / share`` more."""
        if self._share < 1.0 and self._backlogged():
            with self._lock:
                start = max(time.monotonic(), self._paced_until)
                self._paced_until = start + seconds * (1.0 - self._share) / self._share

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            cursor = self._cursors.get(timeout=self._queue_timeout_s)
        except queue.Empty:
            raise ServiceError(
                "busy", f"no query slot free within {self._queue_timeout_s:g} s (query.max_concurrent)"
            ) from None
        with self._lock:
            self._busy.add(cursor)
        try:
            yield cursor
        finally:
            with self._lock:
                self._busy.discard(cursor)
            self._cursors.put(cursor)

    # -- HTTP ----------------------------------------------------------------------------------------------

    def serve(self, host: str, port: int, discovery: Path | None = None) -> int:
        """Listen on ``host:port`` (0: any free port) in a background thread; returns the port.

        ``discovery`` (``<db>.query.json``) gets the URL, so ``orbitwatch query`` finds the running daemon; a
        port that cannot be bound raises ``OSError``, a discovery file that cannot be written
        ``DiscoveryFileError`` (and the service stops listening again).
        """
        self._edge = HttpEdge(self, self._http_limits, "orbitwatch-query/1")
        bound = self._edge.start(host, port)
        if discovery is not None:
            try:
                write_discovery(discovery, f"http://{url_host(host)}:{bound}", self._token is not None)
            except DiscoveryFileError:
                self._edge.stop()
                self._edge = None
                raise
            self._discovery = discovery
        return bound

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening, interrupt running queries, and release the cursors (before the connection closes)."""
        if self._discovery is not None:
            self._discovery.unlink(missing_ok=True)
        if self._edge is not None:
            self._edge.close()
        with self._lock:
            for cursor in self._busy:
                cursor.interrupt()
        deadline = time.monotonic() + timeout_s
        for _ in self._all:  # every cursor back in the pool: no query uses the connection any more
            with contextlib.suppress(queue.Empty):
                self._cursors.get(timeout=max(0.0, deadline - time.monotonic()))
        if self._edge is not None:
            self._edge.join(max(0.0, deadline - time.monotonic()))
            self._edge = None
        for cursor in self._all:
            with contextlib.suppress(duckdb.Error):
                cursor.close()

    def authorized(self, header: str | None) -> bool:
        """True without a token, or when ``header`` is ``Bearer <token>`` (compared in constant time)."""
        if self._token is None:
            return True
        expected = f"Bearer {self._token}".encode()
        return header is not None and hmac.compare_digest(header.encode(), expected)

    def lower_priority(self) -> None:
        """Lower this thread's scheduling priority by ``nice`` (Linux: niceness is per thread)."""
        if self._nice:
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        """The WSGI app: one request, one ``Answer`` (every failure an error object, never a traceback)."""
        answer = self._route(environ)
        headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body)))]
        if answer.status == HTTPStatus.UNAUTHORIZED:
            headers.append(("WWW-Authenticate", 'Bearer realm="orbitwatch"'))
        start_response(f"{answer.status.value} {answer.status.phrase}", [*headers, *answer.headers])
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [answer.body]  # HEAD: the headers only

    def _route(self, environ: WSGIEnvironment) -> Answer:
        try:
            return self._dispatch(Request.of(environ, self._http_limits.max_body_bytes))
        except ServiceError as exc:
            error = error_answer(exc.kind, str(exc))
            return Answer(error.status, error.content_type, error.body, exc.headers)
        except QueryRefusedError as exc:
            log.info("query refused (%s): %s", exc.kind, exc)
            return error_answer(exc.kind, str(exc))
        except QueryError as exc:
            return error_answer("query", str(exc))
        except Exception as exc:  # a bug must cost one request a 500, not the daemon or the connection
            log.exception(
                "query service: unexpected error on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
            )
            return error_answer("internal", f"internal error ({type(exc).__name__}); see the daemon's log")

    def _dispatch(self, request: Request) -> Answer:
        path, method = request.path, request.method
        allow(path, method)
        if path == "/v1/health":
            return json_answer(HTTPStatus.OK, {"status": "ok"})
        if path == "/v1/openapi.json":
            return Answer(HTTPStatus.OK, CONTENT_TYPES["json"], openapi())
        if not self.authorized(request.authorization):
            raise ServiceError("unauthorized", "missing or wrong token: send 'Authorization: Bearer <token>'")
        if path == "/v1/status":
            if self._status is None:
                raise ServiceError("not_found", "this service has no status (it is not part of a daemon)")
            return json_answer(HTTPStatus.OK, self._status())
        if path == "/v1/alerts/commands":
            if self._alert_commands is None:
                raise ServiceError("not_found", "this service takes no alert commands (it is not part of a daemon)")
            outcome, detail = self._alert_commands(request.arguments())
            status = HTTPStatus.OK if outcome == "applied" else HTTPStatus.ACCEPTED
            return json_answer(status, {"outcome": outcome, "detail": detail})
        args = request.arguments()
        fmt = wire_format(args.pop("format", "json"))
        if path == "/v1/saved":
            return json_answer(HTTPStatus.OK, saved_list())
        if path == "/v1/query":
            sql = args.get("sql")
            if not isinstance(sql, str) or not sql.strip():
                raise ServiceError("bad_request", 'give the SQL as "sql"')
            params = args.get("params") or None
            if params is not None and not is_parameters(params):
                raise ServiceError("bad_request", '"params" must be an object of name: number or string')
            self.lower_priority()
            return result_answer(self.run(sql, params), fmt, self._observe_phases)
        name = path.removeprefix("/v1/saved/")
        given = args.get("params", {}) if method == "POST" else args
        if not isinstance(given, dict):
            raise ServiceError("bad_request", '"params" must be an object of name: value')
        self.lower_priority()
        return result_answer(self.run_saved(name, {k: str(v) for k, v in given.items()}), fmt, self._observe_phases)
