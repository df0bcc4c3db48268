"""The ``orbitwatch`` command line: run, simulate, query, sql, replay, check-config, health, broker, demo, rules,
alerts, archive, web."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import click
import duckdb

from orbitwatch.alerts_cmd import alerts, rules_dry_run
from orbitwatch.archive_cmd import archive
from orbitwatch.cli_common import CONFIG_OPTION, open_history, settings_or_exit, setup_logging
from orbitwatch.demo import demo
from orbitwatch.errors import OrbitwatchError, QueryServiceError
from orbitwatch.query_client import QueryClient
from orbitwatch.render import from_frame, render, render_document
from orbitwatch.settings import redacted
from orbitwatch.simulate_cmd import simulate
from orbitwatch.web_cmd import web
from storage.errors import StorageError
from storage.query import OutputFormat, run_query

DBS_OPTION = click.option(
    "--db",
    "dbs",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="History file (default: storage.path); repeat it to query several shards together.",
)


def _open_history(config_path: Path | None, dbs: tuple[Path, ...]) -> duckdb.DuckDBPyConnection:
    """The history read-only: one file, or several shards together (``--db`` repeated)."""
    return open_history(list(dbs) or [settings_or_exit(config_path).storage.path])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """orbitwatch: ground-segment telemetry pipeline for orbital GPU racks.

    Kafka (Avro frames) -> polars -> DuckDB. Start with `orbitwatch demo`, or
    `orbitwatch simulate` then `orbitwatch run`, then `orbitwatch query "SQL"`.
    """


@main.command()
@CONFIG_OPTION
@click.option(
    "--exit-when-idle",
    type=float,
    default=None,
    help="Stop after this many seconds with partitions assigned but no messages.",
)
@click.option("--max-messages", type=int, default=None, help="Stop after consuming this many messages.")
def run(config_path: Path | None, exit_when_idle: float | None, max_messages: int | None) -> None:
    """Run the ingestion daemon until SIGTERM/SIGINT (finishes and commits the batch in hand).

    While it runs it also serves read-only queries (query.port, default 127.0.0.1:9465; `orbitwatch query`
    finds it) and moves days older than retention.raw_days / rollup_days to the Parquet archive.
    """
    from orbitwatch.daemon import Daemon

    settings = settings_or_exit(config_path)
    setup_logging(settings.daemon.log_level)
    log = logging.getLogger("orbitwatch")
    log.info(
        "starting: topic %s on %s, history %s",
        settings.kafka.topic,
        settings.kafka.bootstrap_servers,
        settings.storage.path,
    )
    try:
        daemon = Daemon(settings)
    except OrbitwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        consumed = daemon.run(exit_when_idle_s=exit_when_idle, max_messages=max_messages)
        log.info("stopped after %d messages", consumed)
    except OrbitwatchError as exc:
        log.error("stopping: %s", exc)
        raise click.ClickException(str(exc)) from exc
    finally:
        daemon.close()


@main.command("check-config")
@CONFIG_OPTION
def check_config(config_path: Path | None) -> None:
    """Validate the settings and print them (secrets masked); exit 1 naming the bad field."""
    settings = settings_or_exit(config_path)
    click.echo(render_document(redacted(settings)), nl=False)
    click.echo("settings OK", err=True)


@main.command()
@CONFIG_OPTION
@click.option("--max-age", type=float, default=30.0, show_default=True, help="Seconds since the loop last ran.")
def health(config_path: Path | None, max_age: float) -> None:
    """Liveness check for orchestrators: exit 0 when the daemon loop ran within --max-age seconds."""
    from orbitwatch.daemon import liveness_ok

    path = settings_or_exit(config_path).daemon.liveness_file
    if path is None:
        raise click.ClickException("daemon.liveness_file is not set; liveness cannot be checked")
    if not liveness_ok(path, max_age):
        raise click.ClickException(f"not alive: {path} not touched within {max_age} s")
    click.echo("alive")


@main.command()
@CONFIG_OPTION
@click.argument("sql", required=False)
@click.option("--saved", help="Run a saved query by name instead of SQL (see --list-saved).")
@click.option("--param", "params", multiple=True, help="A saved query's parameter, key=value (repeatable).")
@click.option("--list-saved", is_flag=True, help="List the saved queries and their parameters.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@DBS_OPTION
@click.option("--max-rows", type=int, default=10_000, show_default=True, help="Rows printed at most.")
@click.option(
    "--url",
    default=None,
    help="A daemon's query service, e.g. http://127.0.0.1:9465 (default: found beside the history file).",
)
def query(
    config_path: Path | None,
    sql: str | None,
    saved: str | None,
    params: tuple[str, ...],
    list_saved: bool,
    fmt: OutputFormat,
    dbs: tuple[Path, ...],
    max_rows: int,
    url: str | None,
) -> None:
    """Run SQL (or a saved query) on the history (read-only) and print a table, CSV or JSON.

    While a daemon runs on the history file, the query goes to its query service (it advertises itself in
    <db>.query.json; the token is query.token / ORBITWATCH_QUERY__TOKEN); otherwise the file is opened
    read-only.

    Examples: orbitwatch query "SELECT rack_id, max(temp_c) FROM gpu_samples GROUP BY ALL";
    orbitwatch query --saved hottest-racks --param hours=6; several shards together:
    orbitwatch query --db shard-0.duckdb --db shard-1.duckdb --saved tenant-usage
    """
    from storage.saved_queries import SAVED_QUERIES, run_saved

    if list_saved:
        for q in SAVED_QUERIES.values():
            args = ", ".join(
                f"{n}={p.default if p.default is not None else '(required)'}" for n, p in q.parameters.items()
            )
            click.echo(f"{q.name}: {q.description}\n    --param {args}" if args else f"{q.name}: {q.description}")
        return
    if (sql is None) == (saved is None):
        raise click.UsageError("give either SQL or --saved NAME")
    given: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep:
            raise click.BadParameter(f"{param!r} is not key=value", param_hint="--param")
        given[key] = value
    client = _running_daemon(config_path, dbs, url)
    try:
        if client is not None:  # a daemon holds the file: ask it (read-only snapshot, its guards apply)
            frame = client.saved(saved, dict(given)) if saved else client.query(sql or "")
            result = from_frame(frame, max_rows)
        else:
            con = _open_history(config_path, dbs)
            result = run_saved(con, saved, given, max_rows) if saved else run_query(con, sql or "", max_rows=max_rows)
    except (StorageError, QueryServiceError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(render(result, fmt), nl=fmt == "table")


def _running_daemon(config_path: Path | None, dbs: tuple[Path, ...], url: str | None) -> QueryClient | None:
    """The query service to use: ``--url``, or the daemon advertised beside the one history file; else None."""
    if url is None and len(dbs) > 1:
        return None  # several shards: their files, attached read-only (a running shard's lock is reported)
    settings = settings_or_exit(config_path)
    token = settings.query.token.get_secret_value() if settings.query.token is not None else None
    if url is not None:
        return QueryClient(url, token)
    return QueryClient.discover(dbs[0] if dbs else settings.storage.path, token)


@main.command("sql")
@CONFIG_OPTION
@DBS_OPTION
@click.option("--url", default=None, help="A daemon's query service (default: found beside the history file).")
def sql_shell(config_path: Path | None, dbs: tuple[Path, ...], url: str | None) -> None:
    """Interactive SQL shell on the history (read-only): statements end with ';', .tables, .saved,
    .format table|csv|json, .quit; line editing and history (~/.orbitwatch_sql_history). Goes through the
    running daemon's query service when there is one, as `orbitwatch query` does."""
    from orbitwatch.sql_shell import run_shell

    client = _running_daemon(config_path, dbs, url)
    if client is not None:
        with client:
            failed = run_shell(lambda sql: from_frame(client.query(sql), 10_000), render)
        raise SystemExit(1 if failed else 0)
    try:
        con = _open_history(config_path, dbs)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    failed = run_shell(lambda sql: run_query(con, sql, max_rows=10_000), render)
    con.close()
    raise SystemExit(1 if failed else 0)


@main.command("replay")
@CONFIG_OPTION
@click.option("--from", "start", required=True, help="Start of the range (ISO 8601 Kafka timestamp, inclusive).")
@click.option("--to", "end", required=True, help="End of the range (ISO 8601, exclusive).")
@click.option("--seek-by-time", is_flag=True, help="Seek with offsets_for_times (Apache Kafka; not Tansu).")
@click.option("--idle", type=float, default=5.0, show_default=True, help="Stop after this long with nothing read.")
def replay_command(config_path: Path | None, start: str, end: str, seek_by_time: bool, idle: float) -> None:
    """Re-read a time range from Kafka into the history, idempotently (frames stored once).

    Reads the partitions this daemon owns (static_partitions, or shard_index/shard_count; all otherwise).
    Stop the shard's daemon first: DuckDB allows one process per file. Offsets and counters of the live
    daemon are not changed.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from orbitwatch.replay import ReplayResult, replay

    settings = settings_or_exit(config_path)
    setup_logging(settings.daemon.log_level)
    first, last = _timestamp(start, "--from"), _timestamp(end, "--to")
    if last <= first:
        raise click.BadParameter("must be after --from", param_hint="--to")
    with Progress(SpinnerColumn(), TextColumn("{task.description}")) as bar:
        task = bar.add_task("replaying", total=None)

        def show(r: ReplayResult) -> None:
            bar.update(task, description=f"scanned {r.scanned}, in range {r.in_range}, new frames {r.frames_stored}")

        try:
            result = replay(settings, first, last, seek_by_time=seek_by_time, idle_s=idle, progress=show)
        except OrbitwatchError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(
        f"replayed {result.in_range} of {result.scanned} messages scanned: {result.frames_stored} frames stored, "
        f"{result.duplicates} already present, {result.dead_letters} new dead letters"
    )


def _timestamp(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=option) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@main.command()
@click.option("--port", type=int, default=9092, show_default=True)
def broker(port: int) -> None:
    """Run the embedded memory-only Kafka-protocol broker (Tansu) in the foreground.

    Ctrl-C, SIGTERM or SIGHUP stops the broker and waits for it; if this process is killed outright
    (SIGKILL) the kernel stops the broker too. A port already in use is reported with its holder.
    """
    import signal

    from orbitwatch.broker import EmbeddedBroker

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C: unwinds through the context manager, which stops the broker

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        with EmbeddedBroker(port) as embedded:
            click.echo(
                f"broker listening on {embedded.bootstrap_servers} (pid {embedded.pid}; Ctrl-C or SIGTERM stops"
                " it; data is not kept)"
            )
            try:
                while True:
                    signal.pause()
            except KeyboardInterrupt:
                pass
    except OrbitwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("broker stopped")


@main.group()
def rules() -> None:
    """Alert rules files: check one, or replay it over the stored history (dry run)."""


@rules.command("check")
@click.argument("path", type=click.Path(path_type=Path))
def rules_check(path: Path) -> None:
    """Validate a rules file: every problem is listed with its rule and field; exit 1 if any."""
    from alerting.errors import RulesError
    from alerting.rules.loading import load_rules

    try:
        ruleset = load_rules(path)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from exc
    for rule in ruleset.rules:
        click.echo(f"{rule.name}: scope {rule.scope}, {rule.kind}, group by {', '.join(rule.group_by)}")
    click.echo(f"{path}: {len(ruleset.rules)} rules, {len(ruleset.hooks)} hooks, {len(ruleset.routes)} routes: valid")


main.add_command(simulate)
main.add_command(alerts)  # orbitwatch alerts: list, ack, shelve, unack, unshelve
rules.add_command(rules_dry_run)  # orbitwatch rules dry-run FILE
main.add_command(demo)
main.add_command(archive)  # orbitwatch archive: run, status, views
main.add_command(web)  # orbitwatch web: the operators' web view


if __name__ == "__main__":
    main()
