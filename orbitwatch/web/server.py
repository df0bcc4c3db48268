"""The web view's server: the application over the fleet, its live updates, on the shared HTTP edge."""

from __future__ import annotations

from orbitwatch.http_edge import HttpEdge, HttpLimits
from orbitwatch.settings import WebSettings
from orbitwatch.web.app import create_app
from orbitwatch.web.live import LiveUpdates
from orbitwatch.web.sources import Fleet, Source

SPARE_THREADS = 8
"""HTTP worker threads for page loads and actions, beyond one per live page."""


class WebServer:
    """The web view over ``sources``, on ``host:port`` (``start`` binds before it returns)."""

    def __init__(self, sources: list[Source], web: WebSettings) -> None:
        self.fleet = Fleet(sources)
        self.live = LiveUpdates(self.fleet, web.poll_interval_s, web.max_live_clients)
        token = web.token.get_secret_value() if web.token is not None else None
        limits = HttpLimits(threads=web.max_live_clients + SPARE_THREADS, streaming=True)
        self._edge = HttpEdge(create_app(self.fleet, self.live, token), limits, name="web")
        self._web = web

    def start(self, host: str | None = None, port: int | None = None) -> int:
        """Listen and serve in the background; returns the bound port."""
        bound = self._edge.start(host or self._web.host, self._web.port if port is None else port)
        self.live.start()
        return bound

    def stop(self) -> None:
        """Stop watching, close every connection, release the sources."""
        self.live.stop()
        self._edge.stop()
        self.fleet.close()
