"""``orbitwatch web`` as a real process, for the browser tests and the web benchmark."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

_LISTENING = re.compile(r"web view on (http://\S+?)/? ")


class WebProcess:
    """``orbitwatch web ARGS`` on a free port, logging to ``log`` (``program``: another ``orbitwatch``)."""

    def __init__(
        self, log: Path, *args: str, env: dict[str, str] | None = None, program: list[str] | None = None
    ) -> None:
        self.program = program or [sys.executable, "-m", "orbitwatch.cli"]
        self.log = log
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout_s: float = 30.0) -> str:
        """Start it and wait until it listens; returns its base URL."""
        command = [*self.program, "web", "--port", "0", *self.args]
        since = self.log.stat().st_size if self.log.exists() else 0  # an earlier run's lines name its port
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log.read_bytes()[since:].decode(errors="replace"))
            if found:
                self.url = found.group(1)
                return self.url
            if self.process.poll() is not None:
                raise AssertionError(f"orbitwatch web exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"orbitwatch web did not listen in {timeout_s} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> WebProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
