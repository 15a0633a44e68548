"""The ingest stage: telemetry topic in; valid samples to sinks, bad records to the DLQ.

One loop, one batch at a time::

    poll -> validate each record -> duplicate/lateness check per machine
         -> sinks.write(valid) ; DLQ produce(bad)
         -> sinks.flush() ; producer.flush()        (outputs durable)
         -> commit the batch's offsets               (only now)

A crash anywhere before the commit replays the batch (at least once, never skipped). A
bad record never stops a partition: it becomes a dead letter and the loop goes on. While
a sink's backend is down, consumption pauses and the flush is retried with backoff; the
consumer keeps polling (paused) so that it stays in its group.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ingest.contract import DEFAULT_LIMITS, Limits, Telemetry, validate
from ingest.dlq import DeadLetter, dead_letter
from ingest.metrics import IngestMetrics
from ingest.order import OrderGuard
from ingest.sinks import Sink, TransientSinkError
from plantwatch.errors import PlantwatchError

log = logging.getLogger("plantwatch.ingest")


class DeadLetterError(PlantwatchError):
    """The DLQ topic did not acknowledge dead letters; the batch is not committed."""


@dataclass(frozen=True)
class IngestConfig:
    """How the ingest loop behaves.

    Attributes:
        topic: the telemetry topic.
        dlq_topic: where refused records go.
        limits: contract bounds for validation.
        lateness_ms: out-of-order grace per machine.
        poll_timeout_ms: how long one poll waits for records.
        max_poll_records: most records per batch.
        log_every_s: seconds between progress log lines.
        backoff_max_s: longest wait between retries of a failing sink.
    """

    topic: str = "telemetry"
    dlq_topic: str = "telemetry.dlq"
    limits: Limits = DEFAULT_LIMITS
    lateness_ms: int = 120_000
    poll_timeout_ms: int = 500
    max_poll_records: int = 2000
    log_every_s: float = 10.0
    backoff_max_s: float = 30.0


class IngestService:
    """Runs the ingest loop over a kafka-python consumer and producer.

    Args:
        consumer: a ``KafkaConsumer`` (not yet subscribed; ``run`` subscribes it).
        producer: a ``KafkaProducer`` for dead letters.
        sinks: where valid samples go; flushed before each commit.
        config: loop settings.
        metrics: counters (a fresh set by default).
        clock: wall time in seconds, for validation bounds (injected for tests).
    """

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        sinks: Sequence[Sink],
        config: IngestConfig,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._sinks = list(sinks)
        self.config = config
        self.metrics = metrics or IngestMetrics()
        self._clock = clock
        self._guard = OrderGuard(config.lateness_ms)
        self._machines_of: dict[Any, set[str]] = {}
        self._dlq_errors: list[BaseException] = []
        self._last_log = time.monotonic()
        self._logged_consumed = 0

    # --- Kafka group membership ---------------------------------------------------
    def subscribe(self) -> None:
        """Join the group on the telemetry topic, forgetting state of revoked partitions."""
        from kafka import ConsumerRebalanceListener

        service = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                # Batches are committed before the next poll, so nothing is in flight here.
                for tp in revoked:
                    service._guard.forget(service._machines_of.pop(tp, set()))

            def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("ingest: assigned %s", sorted(tp.partition for tp in assigned))

        self._consumer.subscribe([self.config.topic], listener=_Listener())

    # --- one batch -------------------------------------------------------------------
    def _classify(
        self, tp: Any, message: Any, now_ms: int, valid: list[Telemetry], dead: list[DeadLetter]
    ) -> tuple[int, str | None]:
        value = message.value
        records: list[Telemetry] = []
        if value is None:
            reason, detail = "not_json", "message has no value (a tombstone): expected telemetry"
        else:
            records, rejection = validate(value, now_ms, self.config.limits)
            reason, detail = (rejection.reason, rejection.detail) if rejection else ("", "")
        duplicates = 0
        late: list[Telemetry] = []
        for record in records:
            verdict = self._guard.check(record)
            if verdict == "ok":
                valid.append(record)
                self._machines_of.setdefault(tp, set()).add(record.equipment_id)
            elif verdict == "duplicate":
                duplicates += 1
            else:
                late.append(record)
        if late:
            newest = self._guard.newest(late[0].equipment_id)
            reason = "too_late"
            floor = (newest or 0) - self.config.lateness_ms
            detail = (
                f"{len(late)} of {len(records)} samples of {late[0].equipment_id!r} arrived more "
                f"than {self.config.lateness_ms} ms behind its newest reading (ts {newest}); "
                f"field 'ts': value {late[0].ts_ms}, expected >= {floor}"
            )
        if reason:
            dead.append(
                dead_letter(
                    tp.topic,
                    tp.partition,
                    message.offset,
                    message.timestamp,
                    message.key,
                    value,
                    reason,
                    detail,
                )
            )
        return duplicates, reason or None

    def process(self, polled: dict[Any, list[Any]]) -> dict[Any, int]:
        """Validate and route one polled batch; returns the offsets to commit (next to read).

        Outputs are durable when this returns; the caller then commits.
        """
        now_ms = int(self._clock() * 1000)
        valid: list[Telemetry] = []
        dead: list[DeadLetter] = []
        reasons: Counter[str] = Counter()
        duplicates = consumed = 0
        offsets: dict[Any, int] = {}
        for tp, messages in polled.items():
            for message in messages:
                consumed += 1
                dup, reason = self._classify(tp, message, now_ms, valid, dead)
                duplicates += dup
                if reason:
                    reasons[reason] += 1
                offsets[tp] = message.offset + 1
        for sink in self._sinks:
            sink.write(valid)
        for letter in dead:
            future = self._producer.send(
                self.config.dlq_topic, key=letter.key, value=letter.value, headers=letter.headers
            )
            future.add_errback(self._dlq_errors.append)
        self._flush_durably()
        self.metrics.add(consumed, len(valid), duplicates, reasons)
        return offsets

    def _flush_durably(self) -> None:
        delay = 0.5
        paused = False
        while True:
            try:
                for sink in self._sinks:
                    sink.flush()
                break
            except TransientSinkError as exc:
                if not paused:
                    self._consumer.pause(*self._consumer.assignment())
                    paused = True
                log.warning("ingest: %s; paused, retrying in %.1fs", exc, delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    self._consumer.poll(timeout_ms=200)  # paused: keeps group membership only
                delay = min(delay * 2, self.config.backoff_max_s)
        if paused:
            self._consumer.resume(*self._consumer.paused())
            log.info("ingest: sinks are back; resumed")
        self._producer.flush()
        if self._dlq_errors:
            first = self._dlq_errors[0]
            self._dlq_errors.clear()
            raise DeadLetterError(
                f"the DLQ topic {self.config.dlq_topic!r} did not acknowledge dead letters "
                f"({type(first).__name__}: {first}); the batch was not committed"
            )

    def _commit(self, offsets: dict[Any, int]) -> None:
        from kafka import OffsetAndMetadata

        self._consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        lag = 0
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            position = offsets.get(tp)
            if high is not None and position is not None:
                lag += max(0, high - position)
        self.metrics.set_lag(lag)

    def run(
        self,
        stop: threading.Event,
        *,
        max_messages: int | None = None,
        idle_exit_s: float | None = None,
        on_log: Callable[[str], None] | None = None,
    ) -> IngestMetrics:
        """Consume until ``stop`` is set (or a message count or idle time is reached).

        Args:
            stop: set it (e.g. from a signal handler) to finish the current batch and return.
            max_messages: return after at least this many records were consumed.
            idle_exit_s: return after this many seconds without a record.
            on_log: where progress lines go (default: the logger).
        """
        emit = on_log or log.info
        self.subscribe()
        idle_since = time.monotonic()
        start = time.monotonic()
        while not stop.is_set():
            polled = self._consumer.poll(
                timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_poll_records
            )
            now = time.monotonic()
            if polled:
                with self.metrics.batch_seconds.time():
                    offsets = self.process(polled)
                    self._commit(offsets)
                idle_since = now
            if now - self._last_log >= self.config.log_every_s:
                rate = (self.metrics.consumed - self._logged_consumed) / (now - self._last_log)
                emit(self.metrics.line(rate))
                self._last_log, self._logged_consumed = now, self.metrics.consumed
            if max_messages is not None and self.metrics.consumed >= max_messages:
                break
            if idle_exit_s is not None and now - idle_since >= idle_exit_s:
                break
        elapsed = max(time.monotonic() - start, 1e-9)
        emit(self.metrics.line(self.metrics.consumed / elapsed))
        return self.metrics
