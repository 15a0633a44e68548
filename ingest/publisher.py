"""The producing edge shared by the simulator and the C-MAPSS replay.

A thin wrapper over kafka-python's producer: keyed sends, an optional rate limit,
delivery failures collected (never silently dropped) and raised on :meth:`Publisher.flush`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import PlantwatchError


class PublishError(PlantwatchError):
    """Kafka did not acknowledge some records."""


class Publisher:
    """Send keyed records to Kafka, at most ``rate`` records per second.

    Args:
        producer: a ``kafka.KafkaProducer`` (or anything with its ``send``/``flush``/``close``).
        rate: records per second to stay under; None for as fast as possible.
        clock: monotonic seconds (injected for tests).
        sleep: how to wait (injected for tests).
    """

    def __init__(
        self,
        producer: Any,
        *,
        rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._producer = producer
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._started = clock()
        self.sent = 0
        self.failed = 0
        self.first_error: str | None = None

    def _on_error(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"

    def send(
        self, topic: str, key: bytes, value: bytes, *, timestamp_ms: int | None = None
    ) -> None:
        """Queue one record; blocks only to honour the rate limit or a full buffer."""
        future = self._producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)
        future.add_errback(self._on_error)
        self.sent += 1
        if self._rate is not None and self.sent % 256 == 0:
            ahead = self.sent / self._rate - (self._clock() - self._started)
            if ahead > 0:
                self._sleep(ahead)

    def elapsed(self) -> float:
        """Seconds since this publisher was created."""
        return self._clock() - self._started

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued record is acknowledged.

        Raises:
            PublishError: if any record was not acknowledged.
        """
        self._producer.flush(timeout=timeout)
        if self.failed:
            raise PublishError(
                f"Kafka did not acknowledge {self.failed} of {self.sent} records "
                f"(first error: {self.first_error})"
            )

    def close(self) -> None:
        """Flush and close the producer."""
        try:
            self.flush()
        finally:
            self._producer.close(timeout=10)
