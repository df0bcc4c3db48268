"""Where the web view reads from: each shard's query service, or a history file when no daemon runs.

``Fleet.query`` runs one statement on every shard and returns the rows together, each with its ``shard``
(the index of its source), so a page shows the racks of all shards and an action goes back to the shard
that owns the alert. ``Fleet.version`` changes whenever any shard commits a batch: the live pages' trigger.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import duckdb
import polars as pl

from orbitwatch.cli_common import open_history
from orbitwatch.query_client import Params, QueryClient, QueryServiceError
from orbitwatch.web.errors import ReadOnlyError, SourceError
from storage.errors import QueryError, QueryRefusedError
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


class FileSource:
    """A history file opened read-only (no daemon holds it), queried with the CLI's guards and limits."""

    def __init__(self, path: Path, limits: QueryLimits | None = None) -> None:
        self.name = str(path)
        self._limits = limits or QueryLimits()
        self._path = path
        try:
            self._con = open_history([path])
        except (duckdb.Error, OSError) as exc:
            raise SourceError(self.name, "file_access", f"cannot open {path} read-only: {exc}") from exc
        self._lock = threading.Lock()

    def query(self, sql: str, params: Params | None = None) -> pl.DataFrame:
        """The rows of ``sql`` on the read-only connection (one query at a time)."""
        with self._lock:
            try:
                return run_guarded(self._con, sql, params, self._limits).frame
            except QueryRefusedError as exc:
                raise SourceError(self.name, exc.kind, str(exc)) from exc
            except QueryError as exc:
                raise SourceError(self.name, "query", str(exc)) from exc

    def version(self) -> tuple[str, str | None]:
        """The file's size and modification time (no commit is known)."""
        try:
            stat = os.stat(self._path)
        except OSError as exc:
            raise SourceError(self.name, "file_access", str(exc)) from exc
        return f"{stat.st_size}/{stat.st_mtime_ns}", None

    def alert_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Refused: a file opened read-only takes no commands (``orbitwatch alerts`` changes it directly)."""
        raise ReadOnlyError(
            self.name,
            "read_only",
            f"{self.name} is open read-only (no daemon runs on it): use `orbitwatch alerts {command.get('action')}`",
        )

    def close(self) -> None:
        """Close the connection."""
        self._con.close()


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
