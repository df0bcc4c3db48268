"""Conditions the fault scenarios poll for instead of sleeping: a daemon's status, its log, an idle run."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from importlib import resources
from typing import Any

import httpx
import jsonschema

from orbitwatch.query_client import QueryClient
from tests.integration.daemons import GROUP_SETTINGS, DaemonProcess

SESSION_TIMEOUT_S = int(GROUP_SETTINGS["ORBITWATCH_KAFKA__SESSION_TIMEOUT_MS"]) / 1000


def wait_out_the_session() -> None:
    """Sleep for the group session timeout (and a second): a killed daemon's member has then expired.

    A daemon restarted while the group still lists the killed member waits for a rebalance that Tansu
    may loop in (tests/integration/test_exactly_once.py). Tansu lists a killed member as long as no other
    joins (measured: still "Stable" with the dead member 15 s after a SIGKILL with a 4 s session), so the
    group cannot be polled for it; the expiry is only observable by the next join, hence the sleep.
    """
    time.sleep(SESSION_TIMEOUT_S + 1)


def status(daemon: DaemonProcess) -> dict[str, Any] | None:
    """The running daemon's ``GET /v1/status`` JSON, or None while its query service does not answer it."""
    client = QueryClient.discover(daemon.db, timeout_s=2.0)
    if client is None:
        return None
    with client:
        try:
            response = httpx.get(f"{client.url}/v1/status", timeout=2.0)
        except httpx.HTTPError:
            return None
    if response.status_code != 200:
        return None
    answer = response.json()
    jsonschema.validate(answer, _status_schema())  # as the shipped OpenAPI description says
    return answer if isinstance(answer, dict) else None


@functools.cache
def _status_schema() -> dict[str, Any]:
    """The OpenAPI description's ``Status`` as a JSON schema (OpenAPI 3.0's ``nullable`` as a null type)."""
    document = json.loads(resources.files("orbitwatch").joinpath("openapi.json").read_text())

    def converted(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: converted(v) for k, v in node.items() if k not in ("nullable", "format")}
            if node.get("nullable") and "type" in node:
                out["type"] = [node["type"], "null"]
            return out
        return [converted(v) for v in node] if isinstance(node, list) else node

    schema: dict[str, Any] = converted(document["components"]["schemas"]["Status"])
    return schema


def lines_with(text: str, needle: str) -> list[str]:
    """The lines of ``text`` that contain ``needle``."""
    return [line for line in text.splitlines() if needle in line]


def run_once_to_idle(daemon: DaemonProcess, idle_s: float = 2.0, timeout_s: float = 60.0) -> None:
    """One ``run --exit-when-idle`` of the daemon, which must exit 0 (unlike ``run_until_consumed``, which
    restarts until a count is reached, this lets a lost range show as missing frames instead of a timeout)."""
    daemon.start("--exit-when-idle", str(idle_s))
    try:
        code = daemon.wait(timeout_s)
    except subprocess.TimeoutExpired:
        daemon.kill()
        raise AssertionError(f"the daemon did not go idle in {timeout_s} s: {daemon.log_text()[-3000:]}") from None
    assert code == 0, daemon.log_text()[-3000:]
