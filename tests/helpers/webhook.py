"""A real local HTTP server standing in for an alert webhook's receiver (or Alertmanager's API).

One configurable receiver for every test and benchmark that needs one::

    with WebhookReceiver() as receiver:  # served on 127.0.0.1, a free port
        hook = WebhookHook(receiver.url)
        ...
        receiver.answer = 503  # from now on (``CLOSE``: drop the connection without an answer)
        ...
    assert receiver.json_bodies() == [...]  # the bodies it answered 200, in order

Each POST (any path) is read, then, after ``delay_s`` (and, with ``stall``, once ``release`` is set),
answered: the next ``fail_next`` requests get ``fail_answer``, the others ``answer``; every answer that is
not a 2xx carries ``error_body``. Every request is recorded in ``requests`` (in the order answered) with
the time it was read, its path, headers, body and the status it got.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal

CLOSE: Final = "close"
"""An answer: close the connection without sending a byte of a response (the client sees it dropped)."""

Answer = int | Literal["close"]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the receiver saw it."""

    at: float
    """When its body had been read (``time.time()``)."""
    method: str
    path: str
    """The request target: path and query (``/hooks/alerts?token=s3cr3t``)."""
    headers: dict[str, str]
    body: bytes
    status: int | None
    """The status answered; None when the connection was closed without an answer (``CLOSE``)."""

    @property
    def ok(self) -> bool:
        """Answered with a 2xx status."""
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        """The body, decoded from JSON."""
        return json.loads(self.body)


@dataclass(eq=False)
class WebhookReceiver:
    """A webhook receiver's knobs and records; a context manager serving it on 127.0.0.1 on a free port.

    The knobs may be changed while it serves; each request reads them when it is answered.
    """

    path: str = "/alerts"
    """The path (and query) of ``url``; requests to any path are answered alike."""
    answer: Answer = 200
    """The answer to each request: an HTTP status, or ``CLOSE``."""
    fail_next: int = 0
    """This many of the next requests get ``fail_answer`` instead of ``answer``."""
    fail_answer: Answer = 503
    error_body: bytes = b""
    """The body of every answer that is not a 2xx (e.g. the reason a relay gives)."""
    delay_s: float = 0.0
    """Seconds between reading a request and answering it."""
    stall: bool = False
    """Hold each request until ``release`` is set (at most ``stall_s`` seconds), then answer it."""
    stall_s: float = 2.0
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[Request] = field(default_factory=list)
    """Every request, in the order answered."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = field(default="", init=False)
    """``http://127.0.0.1:<port><path>`` once serving."""
    _server: _Server | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    # --- serving ------------------------------------------------------------------------------------------

    def __enter__(self) -> WebhookReceiver:
        server = _Server(self)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}{self.path}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving (stalled requests are released first); nothing listens on the port after. Idempotent."""
        self.release.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # --- records ------------------------------------------------------------------------------------------

    def accepted(self) -> list[Request]:
        """The requests answered with a 2xx status, in order."""
        with self.lock:
            return [r for r in self.requests if r.ok]

    def refused(self) -> list[Request]:
        """The requests answered otherwise or dropped, in order."""
        with self.lock:
            return [r for r in self.requests if not r.ok]

    def delivered(self) -> list[bytes]:
        """The bodies answered with a 2xx status, in order."""
        return [r.body for r in self.accepted()]

    def json_bodies(self) -> list[Any]:
        """The bodies answered with a 2xx status, decoded from JSON, in order."""
        return [r.json() for r in self.accepted()]

    def take(self) -> list[Request]:
        """Every request recorded since the last call (or the start); forgets them."""
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    # --- answering (on the server's request threads) -------------------------------------------------------

    def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes, at: float) -> Answer:
        """Wait as the knobs say, record the request; what to answer."""
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.stall:
            self.release.wait(self.stall_s)
        with self.lock:
            failing = self.fail_next > 0
            self.fail_next = max(0, self.fail_next - 1)
            answer = self.fail_answer if failing else self.answer
            status = None if answer == CLOSE else int(answer)
            self.requests.append(Request(at, method, path, headers, body, status))
        return answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver


class _Handler(BaseHTTPRequestHandler):
    """Reads a POST and answers it as its server's ``WebhookReceiver`` says."""

    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        at = time.time()
        receiver = self.server.receiver
        answer = receiver._respond(self.command, self.path, dict(self.headers.items()), body, at)
        if answer == CLOSE:
            self.close_connection = True  # no answer at all: the client sees the connection dropped
            return
        status = int(answer)
        text = b"" if 200 <= status < 300 else receiver.error_body
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
        except OSError:  # the client gave up (a timeout)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""
