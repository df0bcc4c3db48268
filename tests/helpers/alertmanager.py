"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on 127.0.0.1, for the alerting tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from orbitwatch.broker import free_port

BINARIES = ("prometheus-alertmanager", "alertmanager")


def alertmanager_binary() -> str:
    """The Alertmanager executable; AssertionError naming the installer when there is none."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(
        "Alertmanager is not installed: run deploy/system-packages.sh (as root), which `make install` runs"
    )


def webhook_config(receiver_url: str, group_by: list[str]) -> str:
    """A config routing every alert to one webhook receiver, grouped by ``group_by``, quickly."""
    labels = ", ".join(f"'{label}'" for label in group_by)
    return f"""
route:
  receiver: hook
  group_by: [{labels}]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: '{receiver_url}'
        send_resolved: true
"""


class Alertmanager:
    """One Alertmanager process with its config and storage under ``home``; ``stop``/``start`` keep both
    (silences and the notification log survive a restart, as in production)."""

    def __init__(self, home: Path, config: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.config = home / "alertmanager.yml"
        self.config.write_text(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "alertmanager.log"

    def start(self, timeout_s: float = 20.0) -> Alertmanager:
        """Start it and wait until it is ready."""
        command = [
            alertmanager_binary(),
            f"--config.file={self.config}",
            f"--storage.path={self.home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip: one instance, nothing on other interfaces
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"alertmanager exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"alertmanager not ready in {timeout_s} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM and wait (it writes its silences and notification log on the way out)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert it holds (active, silenced, inhibited)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5.0)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def silence(self, matchers: dict[str, str], hours: float = 1.0) -> str:
        """Create a silence of exact ``matchers`` through the API; returns its id."""
        now = time.time()
        body = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1)),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + hours * 3600)),
            "createdBy": "tests",
            "comment": "maintenance",
        }
        response = httpx.post(f"{self.url}/api/v2/silences", json=body, timeout=5.0)
        response.raise_for_status()
        return str(response.json()["silenceID"])
