"""Delivers outbox rows to their sinks with retries, exponential backoff and jitter.

The outbox rows were committed with the batch that opened the tickets, so nothing is
lost while a sink is down: the dispatcher (a thread of ``plantwatch alert``, with its
own SQLite connection) claims due rows for a lease, sends them, and marks each
delivered, or reschedules it at ``min(base * 2**attempts, max) * jitter``. After a failure
the rest of that sink's rows wait for the same backoff, so a target that is down costs
one attempt per backoff, not one per ticket. Rows a target refuses for good (a 4xx other
than 408/409/425/429) are marked failed and logged. Delivery is at least once; every
message carries the incident key as idempotency key, so targets deduplicate.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from alerting import store
from alerting.errors import DeliveryError

log = logging.getLogger("plantwatch.alerting")

Sender = Callable[[store.OutboxRow], None]


@dataclass(frozen=True)
class Backoff:
    """Retry timing of outbox deliveries (seconds)."""

    base_s: float = 1.0
    max_s: float = 300.0
    lease_s: float = 60.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failures (with 50-100% jitter)."""
        raw: float = min(self.base_s * 2.0 ** min(attempts, 30), self.max_s)
        return raw * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto


class Dispatcher:
    """Sends due outbox rows; :meth:`run_once` for a single pass, :meth:`start` a thread.

    Args:
        conn: a store connection of its own (not shared with another thread).
        senders: ``{sink name: send(row)}``; a sender raises :class:`DeliveryError`.
        backoff: retry timing.
        clock: wall time in seconds (injected for tests).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        senders: Mapping[str, Sender],
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._senders = dict(senders)
        self._backoff = backoff
        self._clock = clock
        self._hold: dict[str, tuple[float, int]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.delivered = 0
        self.failures = 0

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def run_once(self) -> int:
        """One pass over the due rows; returns how many were delivered."""
        now = self._clock()
        sinks = [s for s in self._senders if self._hold.get(s, (0.0, 0))[0] <= now]
        rows = store.claim_due(self._conn, sinks, self._now_ms(), int(self._backoff.lease_s * 1000))
        done = 0
        broken: set[str] = set()
        for row in rows:
            if row.sink in broken:
                store.release(self._conn, row.id)
                continue
            try:
                self._senders[row.sink](row)
            except DeliveryError as exc:
                self.failures += 1
                streak = self._hold.get(row.sink, (0.0, 0))[1] + 1
                wait = self._backoff.delay(max(row.attempts, streak - 1))
                self._hold[row.sink] = (self._clock() + wait, streak)
                broken.add(row.sink)
                retry_at = self._now_ms() + int(wait * 1000) if exc.retryable else None
                store.mark_failed(self._conn, row.id, str(exc), retry_at)
                if exc.retryable:
                    log.warning("alerting: %s sink: %s; retrying in %.1fs", row.sink, exc, wait)
                else:
                    log.error(
                        "alerting: %s sink refused %s for good: %s", row.sink, row.dedup_key, exc
                    )
                continue
            store.mark_delivered(self._conn, row.id, self._now_ms())
            self._hold.pop(row.sink, None)
            done += 1
        self.delivered += done
        return done

    def start(self, interval_s: float = 0.2) -> None:
        """Run passes in a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    busy = self.run_once()
                except Exception:  # a bug or a locked DB must not kill delivery for good
                    log.exception("alerting: outbox pass failed")
                    busy = 0
                if not busy:
                    self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name="plantwatch-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
