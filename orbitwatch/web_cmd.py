"""``orbitwatch web``: serve the operators' web view (``orbitwatch.web``) until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from orbitwatch.cli_common import CONFIG_OPTION, settings_or_exit, setup_logging
from orbitwatch.settings import Settings
from orbitwatch.web.errors import SourceError
from orbitwatch.web.sources import HistorySource, ServiceSource, Source

log = logging.getLogger(__name__)


def sources_of(settings: Settings, urls: list[str], dbs: list[Path]) -> tuple[list[Source], list[str]]:
    """The shards to show and a line describing each: ``urls`` (query services), ``dbs`` (each through the
    daemon running on it, else the file read-only), or else ``web.urls``, or else ``storage.path``."""
    web = settings.web
    token = web.service_token or settings.query.token
    secret = token.get_secret_value() if token is not None else None
    urls = urls or ([] if dbs else list(web.urls))
    dbs = dbs or ([] if urls else [settings.storage.path])
    sources: list[Source] = [ServiceSource(url, secret) for url in urls]
    described = [f"query service {url}" for url in urls]
    for db in dbs:
        try:
            sources.append(HistorySource(db, secret))
        except SourceError as exc:
            raise click.ClickException(str(exc)) from exc
        described.append(f"{db} through its daemon's query service while one runs on it, else read-only")
    return sources, described


@click.command("web")
@CONFIG_OPTION
@click.option(
    "--url", "urls", multiple=True, help="A daemon's query service; repeat it for every shard (default: web.urls)."
)
@click.option(
    "--db",
    "dbs",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="A history file: its daemon's service if one runs, else the file read-only. Repeatable.",
)
@click.option("--host", default=None, help="Listen address (default: web.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default: web.port, 9470; 0: any free port).")
def web(
    config_path: Path | None, urls: tuple[str, ...], dbs: tuple[Path, ...], host: str | None, port: int | None
) -> None:
    """Serve the operators' web view: fleet, racks, alerts and tenants, updating live.

    Reads every shard through its daemon's query service (same guards and pacing as any client, so
    ingestion keeps priority); without a running daemon it opens the history file read-only. Listens on
    127.0.0.1:9470 by default; with web.token set, acknowledging and shelving from the pages need the token.
    Everything the pages load ships in installed packages: it works air-gapped.
    """
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = settings_or_exit(config_path, **({"web": overrides} if overrides else {}))
    setup_logging(settings.daemon.log_level)
    from orbitwatch.web.server import WebServer  # Flask and its templates load only for this command

    sources, described = sources_of(settings, list(urls), list(dbs))
    server = WebServer(sources, settings.web)
    try:
        bound = server.start()
    except OSError as exc:
        server.fleet.close()
        raise click.ClickException(f"cannot listen on {settings.web.host}:{settings.web.port}: {exc}") from exc
    for line in described:
        log.info("web view reads %s", line)
    shown_host = settings.web.host if ":" not in settings.web.host else f"[{settings.web.host}]"
    click.echo(f"orbitwatch web view on http://{shown_host}:{bound}/ (Ctrl-C stops it)", err=True)
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping the web view", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stop.wait()
    server.stop()
