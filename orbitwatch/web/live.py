"""Pages that update themselves: one watcher of the daemons' commits, server-sent events to every open page.

A thread asks every shard for its last commit (``/v1/status``: in-memory on the daemon, no query slot)
every ``poll_interval_s``; when any shard committed, every open page gets an ``update`` event and fetches
its fresh rows. The event carries the shards' last commits, so a page (and the benchmark) can tell how long
after a commit it showed it. Each open page holds one connection and one HTTP worker thread, so at most
``max_clients`` pages are live at once; another gets 503 and its page falls back to reloading itself.
A comment line every ``heartbeat_s`` keeps proxies from closing a quiet stream and notices a page that left.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator

from orbitwatch.web.errors import TooManyPages
from orbitwatch.web.sources import Fleet

log = logging.getLogger(__name__)


class LiveUpdates:
    """Watches the fleet's commits and streams an event to each open page when one lands."""

    def __init__(self, fleet: Fleet, poll_interval_s: float, max_clients: int, heartbeat_s: float = 10.0) -> None:
        self._fleet = fleet
        self._poll_s = poll_interval_s
        self._heartbeat_s = heartbeat_s
        self._slots = threading.BoundedSemaphore(max_clients)
        self._changed = threading.Condition()
        self._sequence = 0
        self._payload = "{}"
        self._version: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="web-live", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and end every stream."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def version(self) -> str | None:
        """The fleet's marker as last seen (None before the first look): equal markers, equal data."""
        return self._version

    def touched(self, reason: str) -> None:
        """Something changed that no commit shows yet (an operator's action): update every page now."""
        with self._changed:
            self._sequence += 1
            self._version = f"{self._version}+{self._sequence}"  # what pages cached before the action is stale
            self._payload = json.dumps({"reason": reason, "commits": json.loads(self._payload).get("commits", [])})
            self._changed.notify_all()

    def stream(self) -> EventStream:
        """The event stream of one page; ``TooManyPages`` when every slot is taken."""
        if not self._slots.acquire(blocking=False):
            raise TooManyPages("every live page slot is taken (web.max_live_clients)")
        return EventStream(self._events(), self._slots.release)

    def _events(self) -> Generator[bytes]:
        with self._changed:
            seen = self._sequence
        yield b"retry: 2000\n\n"
        while not self._stopping.is_set():
            with self._changed:
                self._changed.wait_for(functools.partial(self._news, seen), timeout=self._heartbeat_s)
                changed, seen, payload = self._sequence != seen, self._sequence, self._payload
            if self._stopping.is_set():
                return
            yield f"event: update\ndata: {payload}\n\n".encode() if changed else b": keep-alive\n\n"

    def _news(self, seen: int) -> bool:
        return self._sequence != seen or self._stopping.is_set()

    def _watch(self) -> None:
        while not self._stopping.wait(self._poll_s):
            try:
                version, commits = self._fleet.version()
            except Exception:  # a watcher that dies silently would freeze every page: log, go on
                log.exception("web view: checking the daemons' commits failed")
                time.sleep(1)
                continue
            if version != self._version:
                with self._changed:
                    first = self._version is None
                    self._version = version
                    self._payload = json.dumps({"reason": "commit", "commits": commits})
                    if not first:
                        self._sequence += 1
                        self._changed.notify_all()


class EventStream:
    """One page's events, its slot given back when the server closes the response (WSGI ``close()``),
    even if the page left before its first event: a generator's ``finally`` would not run then."""

    def __init__(self, events: Generator[bytes], release: Callable[[], None]) -> None:
        self._events = events
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return self._events

    def close(self) -> None:
        """End the stream and free its slot (once)."""
        self._events.close()
        release, self._release = self._release, None
        if release is not None:
            release()
