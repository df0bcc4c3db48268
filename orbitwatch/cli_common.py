"""Pieces shared by the command modules: the --config option, settings loading, logging, opening the history."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import duckdb

from orbitwatch.errors import ConfigError
from orbitwatch.settings import Settings, load_settings
from storage.errors import StorageError

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="ORBITWATCH_CONFIG",
    help="TOML settings file (env ORBITWATCH_CONFIG). ORBITWATCH_* variables override it.",
)


def settings_or_exit(config_path: Path | None, **overrides: Any) -> Settings:
    """Load settings; a bad value exits with a message naming the field (no traceback)."""
    try:
        return load_settings(config_path, **overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


class LibraryErrorsOnOneLine(logging.Filter):
    """A handler filter: a kafka-python record that carries an exception is logged on one line.

    kafka-python logs some connection errors it recovers from with their traceback, e.g. a race in 3.0.12
    where its transport reads a socket it has just closed (``AttributeError: 'NoneType' object has no
    attribute 'recv'``) and turns it into a ``KafkaConnectionError`` it retries. The traceback is the
    library's internals, not something an operator acts on; the exception's type and text stay in the line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True; folds the exception of a ``kafka.*`` record into its message."""
        if record.name.startswith("kafka") and record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


def setup_logging(level: str) -> None:
    """Log lines with time, level and source to stderr; kafka-python only from WARNING up, on one line.

    Logging writes to a duplicate of file descriptor 2, so the codec can mute Rust panic messages on
    fd 2 while it isolates corrupt messages without muting the log.
    """
    stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=stream, force=True
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(LibraryErrorsOnOneLine())
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # kafka-python 3's event loop warns whenever one of its tasks runs over 100 ms ("blocking the event
    # loop"), which a producer sending 1 MiB batches or a consumer decoding a large fetch does routinely.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)


def open_history(paths: list[Path]) -> duckdb.DuckDBPyConnection:
    """The history read-only with its Parquet archive: one file, or several shards together."""
    from storage.archive import attach_archive, relocated_root
    from storage.database import open_database
    from storage.shards import open_shards

    if len(paths) > 1:
        return open_shards(paths)
    con = open_database(paths[0], read_only=True)
    root = relocated_root(con, paths[0])  # a copy: its archive beside it, not where the original logged it
    try:
        attach_archive(con, root=root)  # tables whose old days moved to the Parquet archive: live + files
    except duckdb.Error as exc:
        con.close()
        where = f"in {root}" if root is not None else "where archive_log says"
        raise StorageError(
            f"the Parquet archive of {paths[0]} is not complete {where} (restore it with the database, "
            f"or beside a copy as <db>.archive): {exc}"
        ) from exc
    return con
