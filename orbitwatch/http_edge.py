"""The HTTP edge of the daemon's web endpoints: any WSGI app served by waitress within explicit limits.

Waitress parses requests on one event loop thread and runs the app on a fixed pool of worker threads, so an
idle keep-alive connection costs a socket, not a thread. What the edge guarantees, whatever the app does:

- a connection that has no complete request for ``request_timeout_s`` is closed: an idle keep-alive
  connection, or a client whose body stopped coming (a ``Content-Length`` larger than what it sends);
- at most ``max_connections`` open connections: past it, new ones wait in the listen backlog;
- a body over ``max_body_bytes`` is refused with 413 before it is read; a malformed request (``Content-Length:
  abc`` or ``-1``, a broken chunked body) gets 400 from waitress itself, never a traceback. Those answers
  are the apps' JSON error object, ``{"error": kind, "message": ...}``;
- TCP_NODELAY on every connection (waitress's default socket option): no delayed-ACK stall per answer;
- requests are logged at debug level only (a polling client must not flood the daemon's log).

``HttpEdge.start`` binds before it returns, so a port that cannot be bound raises ``OSError`` at once.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask
from waitress.utilities import Error

log = logging.getLogger(__name__)
# Waitress warns "Task queue depth is N" for every request that waits for a worker thread: under a burst of
# clients, a line per request. Waiting is the design (the query service's slots and pacing); not a warning.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)
_ERROR_KINDS = {413: "too_large", 431: "too_large", 500: "internal"}  # any other error of waitress: bad_request


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP endpoint allows its clients (waitress counts its timeouts in whole seconds)."""

    request_timeout_s: int = 30
    """A connection without a complete request this long is closed (idle keep-alive, or a stalled body)."""
    max_connections: int = 64
    """Open connections at most; further clients wait in the listen backlog."""
    max_body_bytes: int = 1024 * 1024
    """A larger request body is refused with 413."""
    threads: int = 4
    """Worker threads running the app: the requests served at once (others wait for a free one)."""
    streaming: bool = False
    """Send every write of an answer at once (server-sent events): waitress otherwise holds writes under
    18,000 bytes until the answer ends or its event loop next wakes (up to a second later)."""

    def __post_init__(self) -> None:
        if self.request_timeout_s < 1 or self.max_connections < 1 or self.max_body_bytes < 1 or self.threads < 1:
            raise ValueError(f"every HTTP limit must be at least 1: {self}")


class HttpEdge:
    """Serves one WSGI app on ``host:port`` in a background thread until ``stop``."""

    def __init__(self, app: WSGIApplication, limits: HttpLimits, name: str = "http") -> None:
        self._app = app
        self.limits = limits
        self._name = name
        self._map: dict[int, socket.socket] = {}  # waitress's socket map: this server's alone
        self._server: BaseWSGIServer | None = None
        self._loop: threading.Thread | None = None
        self._closing = threading.Event()
        self._closing_lock = threading.Lock()  # the trigger is pulled before the loop can close it

    def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port) and serve in the background; returns the bound port."""
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)  # one address, one port (waitress would bind every address of a name)
        except OSError:
            listener.close()
            raise
        limits = self.limits
        server = create_server(
            _logged(self._app),
            map=self._map,
            sockets=[listener],
            threads=limits.threads,
            connection_limit=limits.max_connections + 2,  # waitress counts its listener and its wake-up pipe too
            channel_timeout=limits.request_timeout_s,
            cleanup_interval=max(1, limits.request_timeout_s // 4),  # how often idle connections are looked for
            max_request_body_size=limits.max_body_bytes,
            ident=self._name,
            log_socket_errors=False,  # a client that hangs up is not the daemon's error
        )
        assert isinstance(server, BaseWSGIServer)  # one socket: one server
        server.channel_class = _StreamingChannel if limits.streaming else _Channel
        self._server = server
        self._loop = threading.Thread(target=self._run, name=f"{self._name}-edge", daemon=True)
        self._loop.start()
        return int(listener.getsockname()[1])

    def close(self) -> None:
        """Stop listening and close every connection (requests being served lose their answer)."""
        if self._server is None or self._loop is None:
            return
        with self._closing_lock:
            self._closing.set()
            self._server.pull_trigger()  # wakes the event loop, which then closes everything itself
        self._loop.join()

    def join(self, timeout_s: float = 5.0) -> None:
        """After ``close``: wait up to ``timeout_s`` for the worker threads to finish their requests."""
        if self._server is not None:
            self._server.task_dispatcher.shutdown(timeout=max(1, round(timeout_s)))
            self._server = None

    def stop(self, timeout_s: float = 5.0) -> None:
        """``close``, then ``join``."""
        self.close()
        self.join(timeout_s)

    def _run(self) -> None:
        assert self._server is not None
        timeout = self._server.adj.asyncore_loop_timeout
        while True:
            wasyncore.loop(timeout=timeout, use_poll=True, map=self._map, count=1)
            with self._closing_lock:  # seen closing: ``close`` has pulled the trigger, which is closed now
                if self._closing.is_set():
                    wasyncore.close_all(self._map)  # on this thread: the loop never polls a closed socket
                    return


class _JsonErrorTask(ErrorTask):
    """Waitress's own error answers (400, 413, 431, 500) as the apps' JSON error object."""

    def execute(self) -> None:
        """Write the error as ``{"error": kind, "message": ...}`` and close the connection after it."""
        parser: Any = self.request  # waitress's request parser (types-waitress says an Error)
        error: Error = parser.error
        message = f"{error.reason}: {error.body}" if error.body else error.reason
        body = json.dumps({"error": _ERROR_KINDS.get(error.code, "bad_request"), "message": message}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers = [("Content-Type", "application/json")]
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    error_task_class = _JsonErrorTask


class _StreamingChannel(_Channel):
    """Wakes the event loop after every write, so a small one (an event) is sent now, not when the loop next
    wakes by itself (``HttpLimits.streaming``)."""

    def write_soon(self, data: bytes) -> int:
        """Queue ``data`` and have the event loop send it at once."""
        written = int(super().write_soon(data))
        if written:
            self.server.pull_trigger()
        return written


def _logged(app: WSGIApplication) -> WSGIApplication:
    """``app``, each request logged at debug level with its status and time."""

    def logged(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ""

        def recorded(
            status_line: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            nonlocal status
            status = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info)

        try:
            return app(environ, recorded)
        finally:
            log.debug(
                "%s %s %s %s %.1f ms",
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                status,
                (time.perf_counter() - started) * 1000,
            )

    return logged
