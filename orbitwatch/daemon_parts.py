"""The daemon's parts, each built from its section of the settings: the history, the writer with its
derived tables and alert step, alert delivery, retention, the query service, the background services.

Kept apart from ``orbitwatch.daemon`` so that module reads as the flow of one batch and its loop; every
builder here checks its settings as it builds (a bad rules file or hook is a ``ConfigError`` at start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from alerting.delivery import DeliveryWorker
from alerting.errors import AlertingError, RulesError
from alerting.hooks.base import Hook, close_hook
from alerting.hooks.registry import build_hook
from alerting.payload import AlertItem
from alerting.rules.loading import load_rules
from alerting.rules.ruleset import RuleSet
from alerting.snapshot import snapshot_path
from alerting.tables import AlertTables
from orbitwatch.alert_intake import alert_intake
from orbitwatch.discovery import discovery_path
from orbitwatch.errors import ConfigError
from orbitwatch.load_threads import LoadThreads
from orbitwatch.metrics import DaemonMetrics
from orbitwatch.query_service import QueryService
from orbitwatch.retention_worker import RetentionWorker
from orbitwatch.services import MetricsEndpoint, QueryEndpoint, Services
from orbitwatch.settings import Settings
from storage.archive import ArchiveViews
from storage.database import open_database
from storage.derived import DerivedTables
from storage.guarded import QueryLimits
from storage.retention import RetentionJob, archive_root


def load_alert_rules(settings: Settings) -> RuleSet | None:
    """The alert rules file of the settings (None without one); an invalid file is a ConfigError."""
    path = settings.alerting.rules_file
    if path is None:
        return None
    if not settings.processing.enabled:
        raise ConfigError("alerting.rules_file needs processing.enabled = true (rules run on the derived tables)")
    try:
        rules = load_rules(path)
    except RulesError as exc:
        raise ConfigError(str(exc)) from exc
    return rules


def open_history(settings: Settings) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """Open (migrating) the history file, sandboxed to its archive folder; returns it and that folder."""
    storage = settings.storage
    archive = archive_root(storage.path, settings.retention.archive_dir)
    archive.mkdir(parents=True, exist_ok=True)
    con = open_database(
        storage.path,
        memory_limit=storage.memory_limit,
        threads=storage.threads,
        checkpoint_threshold=storage.checkpoint_threshold,
        compatibility_version=storage.compatibility_version,
        sandbox=[archive],  # the query service reads no other file; retention writes there
    )
    return con, archive


def load_threads(con: duckdb.DuckDBPyConnection, settings: Settings) -> LoadThreads | None:
    """DuckDB's threads following the load (``orbitwatch.load_threads``) while processing is enabled and
    ``storage.threads`` is not set (None: DuckDB keeps the threads it was opened with).

    With processing, the daemon ingesting keeps the cores busy on its own (decode and derive on the main
    thread, inserts on the writer thread); DuckDB's own second thread then only contends with them.
    Measured on 2 cores: 450k samples/s with DuckDB's default, 480k with 1 thread. The backbone alone is
    faster with the default (670k against 600k), so without processing DuckDB keeps it throughout.
    """
    if settings.storage.threads is not None or not settings.processing.enabled:
        return None
    return LoadThreads(con)


def derived_tables(con: duckdb.DuckDBPyConnection, settings: Settings) -> DerivedTables | None:
    """The derived-tables step the settings ask for (None when ``processing.enabled`` is false)."""
    p = settings.processing
    if not p.enabled:
        return None
    hold = timedelta(seconds=p.open_minute_hold_s) if p.open_minute_hold_s > 0 else None
    return DerivedTables(con, contact=p.contact(), hold=hold)


def alert_tables(con: duckdb.DuckDBPyConnection, settings: Settings, rules: RuleSet | None) -> AlertTables | None:
    """The alert step of the writer's transaction (None without rules); it keeps a snapshot of the live
    alerts beside the database for ``orbitwatch alerts``."""
    if rules is None:
        return None
    return AlertTables(con, rules, settings.alerting.external_url, snapshot_path(settings.storage.path))


def delivery_worker(
    con: duckdb.DuckDBPyConnection,
    rules: RuleSet,
    settings: Settings,
    firing: Callable[[str], list[AlertItem]] | None = None,
) -> DeliveryWorker:
    """The outbox's delivery worker with the rules file's hooks (built, hence checked, at start-up);
    ``firing(hook)``: the alerts still firing that route to a hook, re-sent to those that expire alerts."""
    a = settings.alerting
    hooks: dict[str, Hook] = {}
    try:
        for h in rules.hooks:
            hooks[h.name] = build_hook(h.kind, h.settings, h.name, kafka=settings.kafka)
    except AlertingError as exc:
        for hook in hooks.values():  # those built before the bad one hold connections
            close_hook(hook)
        raise ConfigError(f"alerting hooks in {a.rules_file}: {exc}") from exc
    cursor = con.cursor()  # made here, while no other thread uses the connection; the worker's alone
    return DeliveryWorker(
        lambda: cursor,
        hooks,
        max_attempts=a.max_attempts,
        base_backoff_s=a.base_backoff_s,
        cap_backoff_s=a.max_backoff_s,
        firing=firing,
    )


def retention_worker(con: duckdb.DuckDBPyConnection, root: Path, settings: Settings) -> RetentionWorker | None:
    """The retention thread the settings ask for (its cursor made now, before other threads use ``con``)."""
    r = settings.retention
    if not r.enabled:
        return None
    cursor = con.cursor()
    return RetentionWorker(RetentionJob(cursor, root, r.raw_days, r.rollup_days), cursor, r.interval_s)


def newest_sample(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The newest stored frame's sample time (what retention counts back from)."""
    value = con.execute("SELECT max(sampled_at) FROM rack_frames").fetchall()[0][0]
    return value if isinstance(value, datetime) else None


def query_service(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    metrics: DaemonMetrics,
    backlogged: Callable[[], bool],
    status: Callable[[], Mapping[str, object]],
) -> QueryService | None:
    """The query service the settings ask for, None when disabled (cursors made now, before the writer
    thread uses ``con``); ``status`` answers ``GET /v1/status`` (called only once the service listens)."""
    q = settings.query
    if not q.enabled:
        return None
    return QueryService(
        con,
        QueryLimits(q.statement_timeout_s, q.max_result_rows, q.max_result_bytes),
        views=ArchiveViews(),
        max_concurrent=q.max_concurrent,
        token=q.token.get_secret_value() if q.token is not None else None,
        nice=q.nice,
        observe=metrics.observe_query,
        observe_phases=metrics.observe_query_phases,
        queue_timeout_s=q.queue_timeout_s,
        backlog_share=q.backlog_share,
        backlogged=backlogged,
        status=status,
        alert_commands=alert_intake(settings.storage.path),
        request_timeout_s=q.request_timeout_s,
        max_connections=q.max_connections,
        max_body_bytes=q.max_body_bytes,
    )


def background_services(
    settings: Settings,
    metrics: DaemonMetrics,
    *,
    delivery: DeliveryWorker | None,
    retention: RetentionWorker | None,
    queries: QueryService | None,
) -> Services:
    """The daemon's background services in start order: delivery, retention, metrics, queries last.

    The query service starts last and so stops first: no query is served once the others stop.
    """
    services = Services()
    services.add(delivery)
    services.add(retention)
    d = settings.daemon
    if d.metrics_port is not None:
        services.add(MetricsEndpoint(metrics, d.metrics_host, d.metrics_port))
    if queries is not None:
        q = settings.query
        services.add(QueryEndpoint(queries, q.host, q.port, discovery_path(settings.storage.path)))
    return services
