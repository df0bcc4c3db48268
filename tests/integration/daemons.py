"""Run ``orbitwatch run`` as a real process with settings from ``ORBITWATCH_*`` variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl

from orbitwatch.errors import QueryServiceError
from orbitwatch.query_client import QueryClient

CONSUMED_SQL = "SELECT coalesce(sum(messages), 0)::BIGINT AS consumed FROM kafka_offsets"  # messages accounted
GROUP_SETTINGS = {
    # Tansu's group join takes about half the session timeout (DESIGN.md): keep it short in tests.
    "ORBITWATCH_KAFKA__SESSION_TIMEOUT_MS": "4000",
    "ORBITWATCH_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
    "ORBITWATCH_DAEMON__METRICS_PORT": "null",
    "ORBITWATCH_QUERY__PORT": "0",
    "ORBITWATCH_DAEMON__POLL_TIMEOUT_MS": "200",
}


class DaemonProcess:
    """One daemon with its own DuckDB shard under ``home``."""

    def __init__(self, bootstrap: str, topic: str, home: Path, **settings: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.db = home / "orbitwatch.duckdb"
        self.log = home / "daemon.log"
        self.env = {
            **os.environ,
            **GROUP_SETTINGS,
            "ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "ORBITWATCH_KAFKA__TOPIC": topic,
            "ORBITWATCH_KAFKA__GROUP_ID": f"group-{topic}",
            "ORBITWATCH_STORAGE__PATH": str(self.db),
            "ORBITWATCH_DAEMON__LIVENESS_FILE": str(home / "alive"),
            **{f"ORBITWATCH_{k.upper()}": v for k, v in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> DaemonProcess:
        """Start ``orbitwatch run ARGS`` in the background, appending to its log."""
        command = [sys.executable, "-m", "orbitwatch.cli", "run", *args]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit; returns its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the running daemon."""
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the daemon if it runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def messages_consumed(self) -> int:
        """Sum of messages accounted in the shard (0 before the database exists); daemon must be stopped."""
        if not self.db.exists():
            return 0
        with duckdb.connect(str(self.db), read_only=True) as con:
            row = con.execute(CONSUMED_SQL).fetchone()
        return int(row[0]) if row else 0

    def wait_for_progress(self, beyond: int = 0, timeout_s: float = 90.0) -> int:
        """Wait until the running daemon has committed more than ``beyond`` messages; returns the count.

        Asked through the daemon's query service (the file is locked while it runs), so a test can kill it
        mid-ingestion however slow its start-up is on a loaded machine.
        """
        frame = self.until_answer(
            CONSUMED_SQL, lambda f: int(f[0, 0]) > beyond, timeout_s, f"no progress beyond {beyond} messages"
        )
        return int(frame[0, 0])

    def until_answer(
        self, sql: str, done: Callable[[pl.DataFrame], bool], timeout_s: float = 60.0, what: str | None = None
    ) -> pl.DataFrame:
        """Ask the running daemon's query service ``sql`` until ``done(answer)``; returns that answer.

        Fails when the daemon exits or ``timeout_s`` passes first (saying ``what`` did not happen, with the
        end of its log).
        """
        deadline = time.monotonic() + timeout_s
        last: pl.DataFrame | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, f"the daemon exited: {self.log_text()[-3000:]}"
            client = QueryClient.discover(self.db, timeout_s=5.0)
            if client is not None:
                with client:
                    try:
                        last = client.query(sql)
                    except QueryServiceError:
                        last = None
                if last is not None and done(last):
                    return last
            time.sleep(0.05)
        what = what or f"not answered as expected: {sql}\n{last}"
        raise AssertionError(f"{what} in {timeout_s} s: {self.log_text()[-3000:]}")

    def log_text(self) -> str:
        """Everything the daemon logged."""
        return self.log.read_text() if self.log.exists() else ""


def run_until_consumed(daemon: DaemonProcess, expected: int, timeout_s: float = 120) -> None:
    """Run the daemon with --exit-when-idle until the shard accounts ``expected`` messages."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        daemon.start("--exit-when-idle", "2")
        try:
            code = daemon.wait(max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise AssertionError(f"daemon did not finish: {daemon.log_text()[-4000:]}") from None
        assert code == 0, daemon.log_text()[-3000:]
        if daemon.messages_consumed() >= expected:
            return
    raise AssertionError(f"daemon consumed {daemon.messages_consumed()} of {expected}: {daemon.log_text()[-3000:]}")


DaemonFactory = Callable[..., DaemonProcess]
