"""A Python client of the daemon's query service (what ``orbitwatch query`` uses while a daemon runs).

client = QueryClient.discover(Path("data/orbitwatch.duckdb"))   # or QueryClient("http://127.0.0.1:9465")
frame = client.saved("hottest-racks", {"hours": 6})            # a polars DataFrame, over Arrow IPC
frame = client.query("SELECT count(*) AS racks FROM fleet_health_now")
timed = client.saved_timed("rising-ecc")                       # and where its time went in the daemon
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from orbitwatch.discovery import discovery_path
from orbitwatch.errors import QueryServiceError
from orbitwatch.result_formats import WireFormat, decode

Params = dict[str, int | float | str]


@dataclass(frozen=True, slots=True)
class TimedResult:
    """A result and the daemon's account of its time: ``phases`` in seconds by name, from the answer's
    ``Server-Timing`` header (queue, pace, guard, begin, execute, execute_cpu, convert, commit, encode)."""

    frame: pl.DataFrame
    phases: dict[str, float]


class QueryClient:
    """Queries one daemon's service; results come back as polars DataFrames (Arrow IPC on the wire)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    @classmethod
    def discover(cls, db_path: Path, token: str | None = None, timeout_s: float = 120.0) -> QueryClient | None:
        """The client of the daemon running on ``db_path``, or None when no live daemon advertises one."""
        try:
            info = json.loads(discovery_path(db_path).read_text())
            url, pid = str(info["url"]), int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _alive(pid):
            return None  # a stale file: the daemon was killed without cleaning up
        return cls(url, token, timeout_s)

    def query(self, sql: str, params: Params | None = None) -> pl.DataFrame:
        """Run ``sql`` (named ``$parameters`` bound from ``params``) in one snapshot."""
        return decode(self.fetch(sql, params=params, fmt="arrow"), "arrow")

    def saved(self, name: str, params: Params | None = None) -> pl.DataFrame:
        """Run the saved query ``name`` with ``params`` over its defaults."""
        return decode(self.fetch(saved=name, params=params, fmt="arrow"), "arrow")

    def saved_timed(self, name: str, params: Params | None = None) -> TimedResult:
        """``saved(name, params)`` with the phases the daemon reported for it."""
        response = self._post(saved=name, params=params, fmt="arrow")
        phases = parse_server_timing(response.headers.get("Server-Timing"))
        return TimedResult(decode(response.content, "arrow"), phases)

    def fetch(
        self, sql: str | None = None, *, saved: str | None = None, params: Params | None = None, fmt: WireFormat
    ) -> bytes:
        """The raw result body in ``fmt`` (json, csv, arrow or parquet): of ``sql``, or of a saved query."""
        return self._post(sql, saved=saved, params=params, fmt=fmt).content

    def _post(
        self, sql: str | None = None, *, saved: str | None = None, params: Params | None = None, fmt: WireFormat
    ) -> httpx.Response:
        body: dict[str, Any] = {"params": params or {}, "format": fmt}
        if saved is not None:
            path = f"/v1/saved/{saved}"
        else:
            path, body["sql"] = "/v1/query", sql
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise QueryServiceError("unreachable", f"query service at {self.url}: {exc}") from exc
        if response.status_code != 200:
            raise _error(response)
        return response

    def status(self) -> dict[str, Any]:
        """The daemon's ``/v1/status``: broker, partitions, ``last_commit``, ``messages_committed``."""
        return dict(self._json("GET", "/v1/status"))

    def alert_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send an ack/unack/shelve/unshelve (``POST /v1/alerts/commands``): ``{"outcome", "detail"}``;
        ``QueryServiceError`` (kind ``rejected`` when the daemon rejects it)."""
        return dict(self._json("POST", "/v1/alerts/commands", command))

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise QueryServiceError("unreachable", f"query service at {self.url}: {exc}") from exc
        if response.status_code not in (200, 202):
            raise _error(response)
        return response.json()

    def health(self) -> bool:
        """True when the service answers its health check."""
        try:
            return self._http.get("/v1/health").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def parse_server_timing(header: str | None) -> dict[str, float]:
    """A ``Server-Timing`` header's metrics as seconds by name (``name;dur=ms``; metrics without ``dur`` and
    parts that do not parse are left out)."""
    phases: dict[str, float] = {}
    for metric in (header or "").split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if name and key.strip() == "dur":
                with contextlib.suppress(ValueError):
                    phases[name] = float(value) / 1000
    return phases


def _error(response: httpx.Response) -> QueryServiceError:
    try:
        payload = response.json()
        return QueryServiceError(str(payload["error"]), str(payload["message"]), response.status_code)
    except (ValueError, KeyError, TypeError):
        return QueryServiceError("http", f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
