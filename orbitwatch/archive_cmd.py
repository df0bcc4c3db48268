"""``orbitwatch archive``: move old days to the Parquet archive (run), see what is where (status), and the
SQL that lets the duckdb CLI or any DuckDB client query live rows and archive together (views).

``run`` and ``status`` open the database file, so its daemon must be stopped (a running daemon archives by
itself every ``retention.interval_s``); ``views`` only looks at the archive directory.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import duckdb
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from orbitwatch.cli_common import CONFIG_OPTION, settings_or_exit
from orbitwatch.render import DocumentFormat, TextTable, format_size, format_time, render_blocks, render_document
from storage.archive import identifier, literal, temp_view, view_statements
from storage.errors import StorageError
from storage.retention import ARCHIVED_TABLES, DayToArchive, RetentionJob, RetentionReport, archive_root

DB_OPTION = click.option(
    "--db", type=click.Path(path_type=Path, dir_okay=False), help="History file (default: storage.path)."
)
_PARTS_GLOB = "*/*.parquet"
RUN_WIDTH = 160
"""Terminal columns of ``archive run``'s report."""
STATUS_WIDTH = 180
"""Terminal columns of ``archive status``'s table."""


def _when(value: datetime | None) -> str:
    return format_time(value, seconds=False)


def _paths(config_path: Path | None, db: Path | None) -> tuple[Path, Path, Any]:
    """The database, its archive root and the retention settings."""
    settings = settings_or_exit(config_path)
    path = db if db is not None else settings.storage.path
    return path, archive_root(path, settings.retention.archive_dir), settings


def _open(path: Path, **options: Any) -> duckdb.DuckDBPyConnection:
    from storage.database import open_database

    if not path.exists():
        raise click.ClickException(f"no history database at {path}")
    try:
        return open_database(path, **options)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def archive() -> None:
    """Retention: days older than retention.raw_days (raw frames, GPU samples) or retention.rollup_days
    (rollups, health log) move to Parquet files under <db>.archive/<table>/day=YYYY-MM-DD/; queries read
    live rows and archive together."""


# ---- run ---------------------------------------------------------------------------------------------------


def run_report(report: RetentionReport, root: Path) -> list[str | TextTable]:
    """What one run moved: the cutoffs, one row per file written, the total, deferred days, removed orphans."""
    if report.newest is None:
        lines: list[str | TextTable] = ["nothing stored yet: nothing to archive"]
    else:
        lines = [
            f"newest data {_when(report.newest)}: raw rows kept from {_when(report.raw_cutoff)}, "
            f"rollups from {_when(report.rollup_cutoff)}; archive {root}"
        ]
    if report.parts:
        table = TextTable(("table", "day", "rows", "bytes", "file"), boxed=False)
        for part in report.parts:
            table.add(part.table, part.day.isoformat(), f"{part.rows:,}", format_size(part.bytes), part.path.name)
        lines.append(table)
    lines.append(f"moved {report.rows:,} rows in {len(report.parts)} files ({format_size(report.bytes)})")
    lines += [f"deferred {deferred.table} {deferred.day}: {deferred.reason}" for deferred in report.deferred]
    lines += [f"removed {orphan} (not in archive_log: left by an interrupted run)" for orphan in report.orphans_removed]
    return lines


def render_run(report: RetentionReport, root: Path) -> str:
    """What one run moved, one line per file, then deferred days and removed orphans."""
    return render_blocks(run_report(report, root), RUN_WIDTH)


@archive.command("run")
@CONFIG_OPTION
@DB_OPTION
@click.option("--raw-days", type=click.IntRange(min=1), help="Override retention.raw_days.")
@click.option("--rollup-days", type=click.IntRange(min=1), help="Override retention.rollup_days.")
def run_command(config_path: Path | None, db: Path | None, raw_days: int | None, rollup_days: int | None) -> None:
    """Archive every day older than the kept span once, now (the daemon must be stopped; a running daemon
    does this itself every retention.interval_s). Days count back from the newest stored data."""
    path, root, settings = _paths(config_path, db)
    root.mkdir(parents=True, exist_ok=True)
    con = _open(path, memory_limit=settings.storage.memory_limit, sandbox=[root])
    try:
        job = RetentionJob(
            con, root, raw_days or settings.retention.raw_days, rollup_days or settings.retention.rollup_days
        )
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=Console(stderr=True)
        )
        with progress:
            task = progress.add_task("archiving", total=None)

            def step(index: int, total: int, item: DayToArchive) -> None:
                progress.update(task, completed=index, total=total, description=f"{item.table.name} {item.day}")

            report = job.run_once(step)
            progress.update(task, completed=progress.tasks[0].total or 0, description="archived")
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        con.close()
    click.echo(render_run(report, root), nl=False)


# ---- status ------------------------------------------------------------------------------------------------


def archive_status(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Per archived table: live rows and days, archived days, files, rows and bytes."""
    logged = {
        str(r[0]): r[1:]
        for r in con.execute(
            "SELECT table_name, count(DISTINCT day), count(*), sum(row_count), sum(file_bytes), min(day), max(day) "
            "FROM archive_log GROUP BY table_name"
        ).fetchall()
    }
    records = []
    for table in ARCHIVED_TABLES:
        column = table.time_column
        rows, days, oldest, newest = con.execute(
            f"SELECT count(*), count(DISTINCT floor(epoch({column}) / 86400)), min({column}), max({column}) "
            f"FROM {table.name}"
        ).fetchall()[0]
        a_days, files, a_rows, a_bytes, first_day, last_day = logged.get(table.name, (0, 0, 0, 0, None, None))
        records.append(
            {
                "table": table.name,
                "keeps": "raw_days" if table.raw else "rollup_days",
                "live_rows": int(rows),
                "live_days": int(days),
                "live_from": oldest,
                "live_to": newest,
                "archived_days": int(a_days),
                "archived_files": int(files),
                "archived_rows": int(a_rows or 0),
                "archived_bytes": int(a_bytes or 0),
                "archived_from": first_day,
                "archived_to": last_day,
            }
        )
    return records


def render_status(records: list[dict[str, Any]], header: str) -> str:
    """The status as a table under ``header``."""
    table = TextTable(
        ("table", "live rows", "live days", "live from", "archived days", "files", "archived rows", "bytes"),
        boxed=False,
    )
    for r in records:
        table.add(
            r["table"],
            f"{r['live_rows']:,}",
            str(r["live_days"]),
            _when(r["live_from"]),
            "-" if not r["archived_days"] else f"{r['archived_days']} ({r['archived_from']}..{r['archived_to']})",
            str(r["archived_files"]),
            f"{r['archived_rows']:,}",
            format_size(r["archived_bytes"]),
        )
    return render_blocks([header, table], STATUS_WIDTH)


@archive.command("status")
@CONFIG_OPTION
@DB_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status_command(config_path: Path | None, db: Path | None, fmt: DocumentFormat) -> None:
    """Per table: rows and days still in DuckDB, and days, files, rows and bytes in the archive."""
    path, root, settings = _paths(config_path, db)
    con = _open(path, read_only=True)
    try:
        records = archive_status(con)
    except duckdb.Error as exc:
        raise click.ClickException(f"cannot read the archive log of {path} (schema older than v4?): {exc}") from exc
    finally:
        con.close()
    if fmt == "json":
        click.echo(render_document(records), nl=False)
        return
    r = settings.retention
    header = f"{path}: archive {root} (keeps raw {r.raw_days} days, rollups {r.rollup_days} days before the newest)"
    click.echo(render_status(records, header), nl=False)


# ---- views -------------------------------------------------------------------------------------------------


def catalog_name(db: Path) -> str:
    """The name DuckDB gives a database file it opens: the file name up to its first dot."""
    return db.name.split(".", 1)[0]


def views_script(root: Path, catalog: str) -> str:
    """SQL making each archived table a TEMP view over its live rows in ``catalog`` and every Parquet file
    under ``root/<table>/day=*/`` (a glob, readable by any DuckDB), then the operator views over those."""
    lines = [
        "-- orbitwatch: live tables UNION ALL BY NAME the Parquet archive, then the operator views over them.",
        f"-- duckdb -readonly <db> -init <(orbitwatch archive views --db <db>)   (catalog {catalog}, archive {root})",
        f"-- day pruning: SELECT ... FROM read_parquet('{root}/gpu_samples/{_PARTS_GLOB}', hive_partitioning = true)",
        "--   WHERE day = DATE '2026-03-01'",
    ]
    for table in ARCHIVED_TABLES:
        if not any((root / table.name).glob(_PARTS_GLOB)):
            continue
        files = literal(str(root / table.name / _PARTS_GLOB))
        lines.append(
            f"CREATE OR REPLACE TEMP VIEW {table.name} AS SELECT * FROM {identifier(catalog)}.main.{table.name} "
            f"UNION ALL BY NAME SELECT * FROM read_parquet({files}, hive_partitioning = false, union_by_name = true);"
        )
    lines += [temp_view(statement).strip() + ";" for _, statement in view_statements()]
    return "\n".join(lines) + "\n"


@archive.command("views")
@CONFIG_OPTION
@DB_OPTION
@click.option("--catalog", help="Catalog of the live tables (default: DuckDB's name for --db, its stem).")
def views_command(config_path: Path | None, db: Path | None, catalog: str | None) -> None:
    """Print SQL for the duckdb CLI (or any DuckDB client) that unions live tables and the archive:
    `duckdb -readonly data/orbitwatch.duckdb -init <(orbitwatch archive views)`, or `.read` a saved copy.
    It globs the archive directory; run it on a stopped daemon's files."""
    path, root, _ = _paths(config_path, db)
    click.echo(views_script(root, catalog or catalog_name(path)), nl=False)
