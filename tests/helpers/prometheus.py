"""A real Prometheus (Debian's ``prometheus``) on 127.0.0.1 scraping one target, for the metrics tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from orbitwatch.broker import free_port


def prometheus_binary() -> str:
    """The Prometheus executable; AssertionError naming the installer when there is none."""
    found = shutil.which("prometheus")
    if found is None:
        raise AssertionError("Prometheus is not installed: run deploy/system-packages.sh as root (make install does)")
    return found


class Prometheus:
    """One Prometheus process scraping ``target`` (host:port) every second and evaluating ``rule_file``."""

    def __init__(self, home: Path, target: str, rule_file: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.config = home / "prometheus.yml"
        self.config.write_text(
            f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ['{rule_file}']
scrape_configs:
  - job_name: orbitwatch
    static_configs:
      - targets: ['{target}']
"""
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> Prometheus:
        """Start it and wait until it is ready."""
        command = [
            prometheus_binary(),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready in {timeout_s} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to now, through the HTTP API."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts its rules hold now (pending and firing), through the HTTP API."""
        response = httpx.get(f"{self.url}/api/v1/alerts", timeout=5.0)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
        return alerts
