"""The outbox worker: delivers ``alert_outbox`` rows through their hooks, with retries, on a thread of its own.

``DeliveryWorker(con.cursor, hooks)``: each pass (``run_once``) reads the due rows (``outbox.due``),
delivers each with its hook and records the outcome in its own single-statement transactions:

- success: ``delivered``;
- failure: retried after ``backoff_s(attempts)`` (doubling from ``base_backoff_s`` up to
  ``cap_backoff_s``, with jitter), until ``max_attempts`` attempts have failed: then ``failed`` with the
  last error;
- no hook of the row's name, or a body that is not an Alertmanager body: ``failed`` at once.

Ordering: the rows of one (hook, group key) are delivered in id (enqueue) order, and a queue stops at its
first failure, so a ``resolved`` never overtakes its ``firing``; a queue whose oldest row waits for a
retry blocks only itself. A ``failed`` row is final and no longer blocks its queue (the rows after it are
delivered, e.g. a ``resolved`` whose ``firing`` could not be). Within one pass a hook that failed once is
not tried again (its other queues wait for the next pass, without an attempt being counted), so a hook
that times out costs a pass one timeout, not one per queue.

Re-sending: hooks with a ``resend(alerts)`` method (``alertmanager``) get the alerts still firing that
route to them (``firing(hook_name)``) every ``resend_interval_s`` of theirs, on this thread, between passes,
so a receiver that expires alerts (Alertmanager) keeps them until they resolve. A failed re-send is
logged and tried again at the next interval; it is not an outbox row.

Guarantees: at-least-once. A crash (or a failed database update) after the hook accepted a notification
but before ``mark_delivered`` committed leaves the row pending, and it is delivered again after restart;
receivers deduplicate by fingerprint and status (Alertmanager does). Nothing the worker does touches the
writer's connection or transactions: a slow or dead hook delays only this worker's thread. Run one worker
per database (rows are not leased).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from alerting import outbox
from alerting.errors import DeliveryError
from alerting.hooks.base import Hook, backoff_s, close_hook
from alerting.payload import AlertItem

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The wall clock, timezone-aware (the worker's default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one hook's notifications are retried."""

    max_attempts: int = 8
    base_backoff_s: float = 1.0
    cap_backoff_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        backoff_s(1, self.base_backoff_s, self.cap_backoff_s)  # validates both


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """What one pass did: rows read as due, and what became of them."""

    due: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    """Due rows not tried in this pass: behind a failure in their queue, or their hook failed this pass."""

    @property
    def attempted(self) -> int:
        """Rows handed to a hook or given up in this pass."""
        return self.delivered + self.retried + self.failed


class DeliveryWorker:
    """Delivers the outbox through ``hooks`` (by name) on a cursor from ``cursor_factory``.

    ``cursor_factory`` is typically the writer connection's ``cursor`` method: it is called once, by the
    thread that calls ``start()`` (or the first ``run_once``), and the cursor is then used only by this
    worker. ``policies`` overrides the retry policy per hook name. ``clock`` returns an aware datetime.
    """

    name = "alert delivery"

    def __init__(
        self,
        cursor_factory: Callable[[], duckdb.DuckDBPyConnection],
        hooks: Mapping[str, Hook],
        *,
        max_attempts: int = 8,
        base_backoff_s: float = 1.0,
        cap_backoff_s: float = 300.0,
        jitter: float = 0.1,
        poll_s: float = 0.5,
        batch: int = 100,
        policies: Mapping[str, RetryPolicy] | None = None,
        clock: Callable[[], datetime] = utc_now,
        firing: Callable[[str], list[AlertItem]] | None = None,
    ) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        backoff_s(1, jitter=jitter)  # validates jitter
        self.default_policy = RetryPolicy(max_attempts, base_backoff_s, cap_backoff_s)
        self.policies = dict(policies or {})
        self.hooks = dict(hooks)
        self.jitter = jitter
        self.poll_s = poll_s
        self.batch = batch
        self._cursor_factory = cursor_factory
        self._clock = clock
        self._firing = firing
        self._resent_at: dict[str, float] = {}  # hook name -> monotonic time of its last re-send
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()  # one pass at a time: the cursor is not shared between threads
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        """The latest error of a pass on the thread (a database error), None after a clean pass."""
        self.backlog = 0
        """Notifications pending (not yet delivered or given up) after the latest pass, e.g. for a metric."""

    # --- one pass ---------------------------------------------------------------------------------------

    def _policy(self, hook: str) -> RetryPolicy:
        return self.policies.get(hook, self.default_policy)

    def _now(self, fixed: datetime | None) -> datetime:
        return fixed if fixed is not None else self._clock()

    def _get_cursor(self) -> duckdb.DuckDBPyConnection:
        if self._cursor is None:
            self._cursor = self._cursor_factory()
        return self._cursor

    def run_once(self, now: datetime | None = None) -> DeliveryStats:
        """Deliver what is due at ``now`` (default: the clock), up to ``batch`` rows; returns what it did.

        With ``now`` given, every time recorded by the pass is ``now`` (tests drive the clock); without,
        each outcome is stamped when it happened. Database errors propagate (the row stays as it was).
        """
        with self._lock:
            cursor = self._get_cursor()
            rows = outbox.due(cursor, self._now(now), self.batch)
            delivered = retried = failed = skipped = 0
            stopped: set[tuple[str, str]] = set()  # queues that must not go on in this pass
            tripped: set[str] = set()  # hooks that failed in this pass
            for row in rows:
                queue = (row.hook, row.group_key)
                if queue in stopped or row.hook in tripped or row.next_attempt_at > self._now(now):
                    stopped.add(queue)
                    skipped += 1
                    continue
                outcome = self._deliver(cursor, row, now)
                if outcome == outbox.DELIVERED:
                    delivered += 1
                elif outcome == outbox.FAILED:
                    failed += 1  # final: the queue goes on with its next row
                else:
                    retried += 1
                    stopped.add(queue)
                    tripped.add(row.hook)
            self.backlog = outbox.summary(cursor).get(outbox.PENDING, 0)
            return DeliveryStats(len(rows), delivered, retried, failed, skipped)

    def _deliver(self, cursor: duckdb.DuckDBPyConnection, row: outbox.OutboxRow, now: datetime | None) -> str:
        """One attempt at ``row``; records and returns its new state."""
        hook = self.hooks.get(row.hook)
        if hook is None:
            known = ", ".join(sorted(self.hooks)) or "none"
            error = f"no hook named '{row.hook}' is configured (configured: {known}); not delivered"
            outbox.mark_failed(cursor, row.id, error, attempted=False)
            log.error("alert outbox row %d: %s", row.id, error)
            return outbox.FAILED
        try:
            notification = outbox.notification_from_body(row.body)
        except ValueError as exc:
            error = f"hook '{row.hook}': cannot be delivered: {exc}"
            outbox.mark_failed(cursor, row.id, error, attempted=False)
            log.error("alert outbox row %d: %s", row.id, error)
            return outbox.FAILED
        try:
            hook.deliver(row.body, notification)
        except DeliveryError as exc:
            reason = exc.reason
        except Exception as exc:  # a hook bug must not stop the worker; it counts as a failed attempt
            reason = f"{type(exc).__name__}: {exc}"
        else:
            outbox.mark_delivered(cursor, row.id, self._now(now))
            return outbox.DELIVERED
        attempts = row.attempts + 1
        policy = self._policy(row.hook)
        if attempts >= policy.max_attempts:
            error = str(DeliveryError(row.hook, reason, attempts=attempts))
            outbox.mark_failed(cursor, row.id, error)
            log.error("alert outbox row %d (%s, %s) gave up: %s", row.id, row.group_key, row.status, error)
            return outbox.FAILED
        delay = backoff_s(attempts, policy.base_backoff_s, policy.cap_backoff_s, self.jitter)
        retry_at = self._now(now) + timedelta(seconds=delay)
        outbox.mark_retry(cursor, row.id, f"attempt {attempts}: {reason}", retry_at)
        log.warning(
            "alert outbox row %d to hook '%s': attempt %d of %d failed (%s); retrying in %.1f s",
            row.id,
            row.hook,
            attempts,
            policy.max_attempts,
            reason,
            delay,
        )
        return outbox.PENDING

    def resend_due(self, now_s: float | None = None) -> int:
        """Re-send the still-firing alerts of each re-sending hook whose interval has passed; returns how
        many alerts were sent (failures are logged)."""
        if self._firing is None:
            return 0
        now_s = time.monotonic() if now_s is None else now_s
        sent = 0
        for name, hook in self.hooks.items():
            resend = getattr(hook, "resend", None)
            interval = getattr(hook, "resend_interval_s", None)
            if resend is None or interval is None:
                continue
            if now_s - self._resent_at.get(name, float("-inf")) < interval:
                continue
            self._resent_at[name] = now_s
            try:
                sent += int(resend(self._firing(name)))
            except DeliveryError as exc:
                log.warning(
                    "re-sending the firing alerts to hook '%s' failed: %s; next try in %g s", name, exc, interval
                )
            except Exception as exc:  # a hook bug must not stop the worker
                log.exception("re-sending the firing alerts to hook '%s' failed: %s", name, exc)
        return sent

    # --- the thread -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run passes on a daemon thread until ``stop``: every ``poll_s``, at once after ``wake``."""
        if self._thread is not None:
            raise RuntimeError("the delivery worker is already started")
        with self._lock:
            self._get_cursor()  # made by the caller's thread, which owns the parent connection
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="alert-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Start a pass now (e.g. after the writer committed notifications)."""
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the thread (after the delivery in progress, if any); True if it ended within ``timeout``.

        The cursor is closed once the thread has ended; stop the worker before closing the connection.
        """
        thread = self._thread
        if thread is None:
            self.close()
            return True
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the alert delivery thread did not stop within %s s (a hook is still busy)", timeout)
            return False
        self._thread = None
        self.close()
        return True

    def close(self) -> None:
        """Close the worker's cursor (not while its thread runs)."""
        with self._lock:
            if self._cursor is not None:
                self._cursor.close()
                self._cursor = None

    def close_hooks(self) -> None:
        """Release what the hooks hold (HTTP connections, Kafka producers) once the worker is done with them;
        not while its thread runs (a hook still busy after ``stop`` timed out keeps its connections)."""
        if self._thread is not None and self._thread.is_alive():
            return
        for hook in self.hooks.values():
            close_hook(hook)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                stats = self.run_once()
                self.last_error = None
            except Exception as exc:  # e.g. a database error: logged, and tried again on the next poll
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("alert delivery pass failed: %s", self.last_error)
                stats = DeliveryStats()
            self.resend_due()
            if stats.due >= self.batch and stats.attempted:
                continue  # a backlog: go on without waiting
            self._wake.wait(self.poll_s)
            self._wake.clear()
