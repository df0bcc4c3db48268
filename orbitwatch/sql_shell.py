"""``orbitwatch sql``: an interactive SQL shell on the history, with line editing, history and tables.

Statements end with ``;`` and may span lines. ``.tables`` lists tables and views, ``.saved`` the saved
queries, ``.format table|csv|json`` switches the output, ``.quit`` (or Ctrl-D) leaves. History is kept in
``~/.orbitwatch_sql_history`` (when readline is available). A bad statement prints DuckDB's message and the
shell goes on. As ``orbitwatch query``: through the daemon's query service while one runs, else the file opened
read-only (several shards with repeated ``--db``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from orbitwatch.errors import QueryServiceError
from storage.errors import QueryError
from storage.query import OutputFormat, QueryResult
from storage.saved_queries import SAVED_QUERIES

HISTORY = Path.home() / ".orbitwatch_sql_history"
PROMPT, MORE = "orbitwatch> ", "      ...> "


def _readline_history() -> Callable[[], None]:
    """Load the history file if readline is there; returns how to save it."""
    try:
        import readline
    except ImportError:  # pragma: no cover - not on this platform
        return lambda: None
    with contextlib.suppress(OSError):
        readline.read_history_file(HISTORY)
    readline.set_history_length(1000)

    def save() -> None:
        with contextlib.suppress(OSError):
            readline.write_history_file(HISTORY)

    return save


def statements(lines: Iterator[str]) -> Iterator[str]:
    """Complete statements (ending with ``;``) and dot-commands from input lines."""
    buffer: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not buffer and stripped.startswith("."):
            yield stripped
            continue
        if stripped:
            buffer.append(line)
        if stripped.endswith(";"):
            yield "\n".join(buffer)
            buffer = []
    if buffer:
        yield "\n".join(buffer)


def _input_lines(interactive: bool) -> Iterator[str]:
    if not interactive:
        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    prompt = PROMPT
    while True:
        try:
            line = input(prompt)
        except EOFError:
            click.echo()
            return
        yield line
        prompt = PROMPT if line.strip().endswith(";") or line.strip().startswith(".") or not line.strip() else MORE


def run_shell(run: Callable[[str], QueryResult], render: Callable[[QueryResult, OutputFormat], str]) -> int:
    """Read statements until ``.quit`` or end of input, ``run`` each; returns how many failed."""
    interactive = sys.stdin.isatty()
    save = _readline_history() if interactive else (lambda: None)
    fmt: OutputFormat = "table"
    failed = 0
    try:
        for entered in statements(_input_lines(interactive)):
            statement = entered
            if statement in (".quit", ".exit"):
                break
            if statement == ".tables":
                statement = "SELECT table_name, table_type FROM information_schema.tables ORDER BY 1"
            elif statement == ".saved":
                for query in SAVED_QUERIES.values():
                    click.echo(f"{query.name}: {query.description}")
                continue
            elif statement.startswith(".format"):
                choice = statement.split()[-1]
                if choice in ("table", "csv", "json"):
                    fmt = choice  # type: ignore[assignment]
                else:
                    click.echo("usage: .format table|csv|json", err=True)
                continue
            elif statement.startswith("."):
                click.echo(f"unknown command {statement.split()[0]} (.tables .saved .format .quit)", err=True)
                continue
            try:
                click.echo(render(run(statement), fmt), nl=fmt == "table")
            except (QueryError, QueryServiceError) as exc:
                failed += 1
                click.echo(f"Error: {exc}", err=True)
    finally:
        save()
    return failed
