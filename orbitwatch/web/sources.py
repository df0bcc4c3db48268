"""Where the web view reads from: each shard's query service, or a history file (through its daemon while
one runs on it, else read-only).

``Fleet.query`` runs one statement on every shard and returns the rows together, each with its ``shard``
(the index of its source), so a page shows the racks of all shards and an action goes back to the shard
that owns the alert. ``Fleet.version`` changes whenever any shard commits a batch: the live pages' trigger.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import duckdb
import polars as pl

from orbitwatch.cli_common import open_history
from orbitwatch.errors import QueryServiceError
from orbitwatch.query_client import Params, QueryClient
from orbitwatch.web.errors import ReadOnlyError, SourceError
from storage.errors import QueryError, QueryRefusedError, StorageError
from storage.guarded import QueryLimits, run_guarded


class Source(Protocol):
    """One shard of the history."""

    name: str

    def query(self, sql: str, params: Params | None = None) -> pl.DataFrame:
        """The rows of ``sql``; ``SourceError`` naming the shard if it fails."""
        ...

    def version(self) -> tuple[str, str | None]:
        """A marker that changes whenever the shard commits a batch, and its last commit (ISO 8601, if known)."""
        ...

    def alert_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Hand an ack/shelve command to the shard's daemon: ``{"outcome", "detail"}``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ServiceSource:
    """A daemon's query service (``GET``/``POST /v1/...``): the web view's queries are paced like any client's."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 60.0) -> None:
        self.name = url
        self._client = QueryClient(url, token, timeout_s)

    def query(self, sql: str, params: Params | None = None) -> pl.DataFrame:
        """The rows of ``sql`` over Arrow IPC."""
        try:
            return self._client.query(sql, params)
        except QueryServiceError as exc:
            raise SourceError(self.name, exc.kind, str(exc)) from exc

    def version(self) -> tuple[str, str | None]:
        """The daemon's last commit and the messages it committed (``/v1/status``)."""
        try:
            status = self._client.status()
        except QueryServiceError as exc:
            raise SourceError(self.name, exc.kind, str(exc)) from exc
        commit = status.get("last_commit")
        return f"{commit}/{status.get('messages_committed')}", str(commit) if commit else None

    def alert_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/alerts/commands``: the daemon spools and applies it like ``orbitwatch alerts``."""
        try:
            return self._client.alert_command(command)
        except QueryServiceError as exc:
            raise SourceError(self.name, exc.kind, str(exc)) from exc

    def close(self) -> None:
        """Close the HTTP pool."""
        self._client.close()


class HistorySource:
    """A history file: through its daemon's query service while one runs on it (its discovery file), else
    the file itself read-only, with the CLI's guards and limits.

    The file is opened for queries and closed again after ``idle_close_s`` without one, so a daemon (or
    ``orbitwatch alerts ack``) can take the file at any time; once a daemon runs on it, the next query goes
    to its service. Decision: re-opening costs 30-60 ms on a 13 GiB history, a price paid only while no
    daemon runs, against a web view that would otherwise keep the daemon from starting.
    """

    def __init__(
        self, path: Path, token: str | None = None, limits: QueryLimits | None = None, idle_close_s: float = 2.0
    ) -> None:
        self.name = str(path)
        self._path = path
        self._token = token
        self._limits = limits or QueryLimits()
        self._idle_close_s = idle_close_s
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._last_used = 0.0
        self._services: dict[str, ServiceSource] = {}
        self._services_lock = threading.Lock()
        self._closer: threading.Thread | None = None
        self._closing = threading.Event()
        if self._service() is None and not path.exists():
            raise SourceError(self.name, "file_access", f"no history database at {path} and no daemon runs on it")

    @property
    def open_read_only(self) -> bool:
        """True while this process holds the file open."""
        return self._con is not None

    def query(self, sql: str, params: Params | None = None) -> pl.DataFrame:
        """The rows of ``sql``: from the daemon's service, or on the read-only file (one query at a time)."""
        service = self._service()
        if service is not None:
            return service.query(sql, params)
        with self._lock:
            con = self._connection()
            try:
                return run_guarded(con, sql, params, self._limits).frame
            except QueryRefusedError as exc:
                raise SourceError(self.name, exc.kind, str(exc)) from exc
            except QueryError as exc:
                raise SourceError(self.name, "query", str(exc)) from exc
            finally:
                self._last_used = time.monotonic()

    def version(self) -> tuple[str, str | None]:
        """The daemon's last commit, or the file's size and modification time (no commit is known)."""
        service = self._service()
        if service is not None:
            return service.version()
        try:
            stat = os.stat(self._path)
        except OSError as exc:
            raise SourceError(self.name, "file_access", str(exc)) from exc
        return f"{stat.st_size}/{stat.st_mtime_ns}", None

    def alert_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """To the daemon; refused while no daemon runs (``orbitwatch alerts`` then changes the file directly)."""
        service = self._service()
        if service is not None:
            return service.alert_command(command)
        raise ReadOnlyError(
            self.name,
            "read_only",
            f"no daemon runs on {self.name}, which is open read-only: use `orbitwatch alerts {command.get('action')}`",
        )

    def close(self) -> None:
        """Release the file and the services' connections."""
        self._closing.set()
        with self._lock:
            self._release()
        with self._services_lock:
            services = list(self._services.values())
        for service in services:
            service.close()

    def _service(self) -> ServiceSource | None:
        client = QueryClient.discover(self._path, self._token)
        if client is None:
            return None
        client.close()
        with self._services_lock:  # pages and the live watcher ask at once: one pool per daemon, all closed
            service = self._services.get(client.url)
            if service is None:
                service = self._services[client.url] = ServiceSource(client.url, self._token)
        with self._lock:
            self._release()  # the daemon has the file now
        return service

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            try:
                self._con = open_history([self._path])
            except (duckdb.Error, OSError, StorageError) as exc:
                raise SourceError(self.name, "file_access", f"cannot open {self._path} read-only: {exc}") from exc
            if self._closer is None or not self._closer.is_alive():
                self._closer = threading.Thread(target=self._close_when_idle, name="web-file-closer", daemon=True)
                self._closer.start()
        return self._con

    def _close_when_idle(self) -> None:
        while not self._closing.wait(min(0.5, self._idle_close_s)):
            with self._lock:
                if self._con is not None and time.monotonic() - self._last_used >= self._idle_close_s:
                    self._release()
                    return

    def _release(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class Fleet:
    """Every shard as one: a statement runs on all of them (in parallel) and their rows are concatenated."""

    def __init__(self, sources: Sequence[Source]) -> None:
        if not sources:
            raise ValueError("a fleet needs at least one source")
        self.sources = list(sources)
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.sources)), thread_name_prefix="web-shard")

    def query(self, sql: str, params: Params | None = None) -> pl.DataFrame:
        """The rows of ``sql`` from every shard, with a ``shard`` column (the source's index)."""
        if len(self.sources) == 1:
            frames = [self.sources[0].query(sql, params)]
        else:
            frames = list(self._pool.map(lambda source: source.query(sql, params), self.sources))
        tagged = [f.with_columns(pl.lit(i, pl.Int32).alias("shard")) for i, f in enumerate(frames)]
        return pl.concat(tagged, how="diagonal_relaxed")

    def query_answering(self, sql: str, params: Params | None = None) -> tuple[pl.DataFrame, list[SourceError]]:
        """Like ``query``, but with the rows of the shards that answered and the errors of those that did not
        (a fleet-wide page shows what it can); raises only when no shard answered."""

        def one(index: int) -> pl.DataFrame | SourceError:
            try:
                return self.sources[index].query(sql, params).with_columns(pl.lit(index, pl.Int32).alias("shard"))
            except SourceError as exc:
                return exc

        answers = list(self._pool.map(one, range(len(self.sources))))
        frames = [a for a in answers if isinstance(a, pl.DataFrame)]
        errors = [a for a in answers if isinstance(a, SourceError)]
        if not frames:
            raise errors[0]
        return pl.concat(frames, how="diagonal_relaxed"), errors

    def version(self) -> tuple[str, list[str | None]]:
        """All shards' markers as one, and each shard's last commit; an unreachable shard counts as its error
        (so its return is noticed)."""
        parts, commits = [], []
        for source in self.sources:
            try:
                marker, commit = source.version()
            except SourceError as exc:
                marker, commit = f"error:{exc.kind}", None
            parts.append(marker)
            commits.append(commit)
        return "|".join(parts), commits

    def alert_command(self, shard: int, command: dict[str, Any]) -> dict[str, Any]:
        """Send ``command`` to the daemon of ``shard``."""
        if not 0 <= shard < len(self.sources):
            raise SourceError("fleet", "bad_request", f"no shard {shard} (0 to {len(self.sources) - 1})")
        return self.sources[shard].alert_command(command)

    def close(self) -> None:
        """Close every source."""
        self._pool.shutdown(wait=False)
        for source in self.sources:
            source.close()
