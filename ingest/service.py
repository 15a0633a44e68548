"""The ingest stage: telemetry topic in; valid samples to sinks, bad records to the DLQ.

One loop, one batch at a time::

    poll -> validate each record -> duplicate/lateness check per machine
         -> each sink: write(valid) + flush()       (records it refuses: dead letters)
         -> DLQ produce(bad) ; producer.flush()     (outputs durable)
         -> commit the batch's offsets               (only now)

A crash anywhere before the commit replays the batch (at least once, never skipped). A
bad record never stops a partition: it becomes a dead letter and the loop goes on; so
does a record that passed validation and that a sink then refuses (InfluxDB's HTTP 400):
the refused write is bisected until the refused messages are found, their neighbours are
written, and each refused message becomes a dead letter ``sink_refused`` with the sink's
words. While a sink's backend is down, consumption pauses and the flush is retried with
backoff; the consumer keeps polling (paused) so that it stays in its group. A batch that
Kafka refuses is rebuilt from the committed offsets after a growing pause, and the sinks
are not handed its records again (a ``--tap`` file gets each line once).
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
from ingest.featurestage import FeatureOutput, FeatureStage
from ingest.metrics import IngestMetrics
from ingest.order import OrderGuard
from ingest.sinks import Sink, TransientSinkError
from pipeline.deadletter import DeadLetter, letter_of
from pipeline.errors import FencedError, OutputsLostError
from pipeline.influxlines import isolate
from pipeline.paused import retry_paused
from pipeline.rewind import settle_replay
from pipeline.runtime import RuntimeConfig, StageRuntime

log = logging.getLogger("plantwatch.ingest")


DeadLetterError = OutputsLostError
"""Kafka did not acknowledge the batch's outputs (:class:`pipeline.errors.OutputsLostError`)."""

__all__ = ["DeadLetterError", "FencedError", "IngestConfig", "IngestService"]


@dataclass(frozen=True)
class IngestConfig:
    """How the ingest loop behaves.

    Attributes:
        topic: the telemetry topic.
        dlq_topic: where refused records go.
        features_topic: where feature records go (when a feature stage is given).
        limits: contract bounds for validation.
        lateness_ms: out-of-order grace per machine.
        poll_timeout_ms: how long one poll waits for records.
        max_poll_records: most records per batch.
        log_every_s: seconds between progress log lines.
        backoff_max_s: longest wait between retries of a failing sink.
        transactional: produce outputs and commit offsets in one Kafka transaction (the
            producer must have a ``transactional_id``): exactly once in the output topics.
    """

    topic: str = "telemetry"
    dlq_topic: str = "telemetry.dlq"
    features_topic: str = "features"
    limits: Limits = DEFAULT_LIMITS
    lateness_ms: int = 120_000
    poll_timeout_ms: int = 500
    max_poll_records: int = 2000
    log_every_s: float = 10.0
    backoff_max_s: float = 30.0
    transactional: bool = False


@dataclass
class _Batch:
    """Outputs of one polled batch, before they are made durable.

    ``sunk``: the valid samples for the sinks, grouped by their source message (a refused
    message is dead-lettered whole); ``valid``: how many valid samples the batch has.
    """

    sunk: list[tuple[Any, Any, list[Telemetry]]]
    dead: list[DeadLetter]
    features: list[FeatureOutput]
    offsets: dict[Any, int]
    reasons: Counter[str]
    valid: int = 0
    duplicates: int = 0
    consumed: int = 0


class IngestService:
    """Runs the ingest loop over a kafka-python consumer and producer.

    Args:
        consumer: a ``KafkaConsumer`` (not yet subscribed; ``run`` subscribes it).
        producer: a ``KafkaProducer`` for dead letters and feature records (with a
            ``transactional_id`` when ``config.transactional``).
        sinks: where valid samples go; flushed before each commit.
        config: loop settings.
        metrics: counters (a fresh set by default).
        clock: wall time in seconds, for validation bounds (injected for tests).
        features: the feature stage; None to only validate and route telemetry.
    """

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        sinks: Sequence[Sink],
        config: IngestConfig,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], float] = time.time,
        features: FeatureStage | None = None,
    ) -> None:
        self._sinks = list(sinks)
        self.config = config
        self.metrics = metrics or IngestMetrics()
        self.features = features
        self._clock = clock
        self._guard = OrderGuard(config.lateness_ms)
        self._machines_of: dict[Any, set[str]] = {}
        self._replay_until: dict[Any, int] = {}
        # Per partition, the offset below which the sinks already have every record: a
        # batch replayed after Kafka refused it does not hand them the same lines again.
        self._sunk: dict[Any, int] = {}
        self.runtime = StageRuntime(
            consumer,
            producer,
            RuntimeConfig.of("ingest", config, config.transactional),
            log,
            forget=self._forget_partition,
            replay=self._replay_until.__setitem__ if features is not None else None,
            on_lag=self.metrics.set_lag,
            forget_on_revoke=True,
        )

    def _forget_partition(self, tp: Any) -> None:
        """Drop a partition's machines from the order guard and the windows."""
        machines = self._machines_of.pop(tp, set())
        self._guard.forget(machines)
        if self.features is not None:
            self.features.forget(list(machines))
        self._replay_until.pop(tp, None)

    # --- one batch -------------------------------------------------------------------
    def _too_late(self, records: Sequence[Telemetry], late: Sequence[Telemetry]) -> str:
        newest = self._guard.newest(late[0].equipment_id)
        floor = (newest or 0) - self.config.lateness_ms
        return (
            f"{len(late)} of {len(records)} samples of {late[0].equipment_id!r} arrived more "
            f"than {self.config.lateness_ms} ms behind its newest reading (ts {newest}); "
            f"field 'ts': value {late[0].ts_ms}, expected >= {floor}"
        )

    def _partition(self, tp: Any, messages: Sequence[Any], now_ms: int, batch: _Batch) -> None:
        replay_until = self._replay_until.get(tp)
        sunk_until = self._sunk.get(tp, -1)
        fed: list[Telemetry] = []
        fed_offsets: list[int] = []
        by_offset: dict[int, Any] = {}
        for message in messages:
            replaying = replay_until is not None and message.offset < replay_until
            batch.offsets[tp] = message.offset + 1
            if not replaying:
                batch.consumed += 1
            records: list[Telemetry] = []
            if message.value is None:
                reason, detail = (
                    "not_json",
                    "message has no value (a tombstone): expected telemetry",
                )
            else:
                records, rejection = validate(message.value, now_ms, self.config.limits)
                reason, detail = (rejection.reason, rejection.detail) if rejection else ("", "")
            late: list[Telemetry] = []
            accepted: list[Telemetry] = []
            for record in records:
                verdict = self._guard.check(record)
                if verdict == "ok":
                    self._machines_of.setdefault(tp, set()).add(record.equipment_id)
                    fed.append(record)
                    fed_offsets.append(message.offset)
                    if not replaying:
                        accepted.append(record)
                elif verdict == "duplicate":
                    batch.duplicates += 0 if replaying else 1
                else:
                    late.append(record)
            if accepted:
                batch.valid += len(accepted)
                if message.offset >= sunk_until:
                    batch.sunk.append((tp, message, accepted))
            if late:
                reason, detail = "too_late", self._too_late(records, late)
            if reason and not replaying:
                batch.dead.append(letter_of(tp, message, reason, detail))
                batch.reasons[reason] += 1
            by_offset[message.offset] = message
        if self.features is not None and fed:
            outputs, late_positions = self.features.update(fed, fed_offsets, replay_until)
            batch.features.extend(outputs)
            # With lateness <= the windows' grace (as `plantwatch ingest` sets it) the
            # guard above already refused these; this only guards other configurations.
            late_at = {fed_offsets[i]: fed[i] for i in late_positions}
            for offset, sample in sorted(late_at.items()):
                if replay_until is None or offset >= replay_until:
                    detail = (
                        f"a sample of {sample.equipment_id!r} (ts {sample.ts_ms}) falls in a "
                        "feature step that was already closed"
                    )
                    batch.dead.append(letter_of(tp, by_offset[offset], "too_late", detail))
                    batch.reasons["too_late"] += 1
        settle_replay(tp, batch.offsets, self._replay_until)

    def process(self, polled: dict[Any, list[Any]]) -> dict[Any, int]:
        """Validate and route one polled batch, make its outputs durable and commit it.

        Returns the committed offsets (next to read) per partition.
        """
        batch = _Batch([], [], [], {}, Counter())
        now_ms = int(self._clock() * 1000)
        for tp, messages in polled.items():
            self._partition(tp, messages, now_ms, batch)
        if not batch.offsets:  # only records of replays that have not reached their mark
            return {}
        self._deliver(batch)
        if not self._produce_and_commit(batch):
            return {}
        self.metrics.add(batch.consumed, batch.valid, batch.duplicates, batch.reasons)
        return batch.offsets

    def _deliver(self, batch: _Batch) -> None:
        """Hand the valid samples to each sink in turn; what one refuses becomes a dead letter.

        A sink refuses a write whole (InfluxDB's HTTP 400 names one line); the write is
        bisected by source message (:func:`pipeline.influxlines.isolate`) so that every
        other message is delivered, and the later sinks get only what the earlier took.
        """
        groups = batch.sunk
        for sink in self._sinks:

            def attempt(
                part: Sequence[tuple[Any, Any, list[Telemetry]]], sink: Sink = sink
            ) -> None:
                sink.write([record for _tp, _message, records in part for record in records])
                self._retry_transient(sink.flush)

            refused = isolate(groups, attempt)
            for (tp, message, records), exc in refused:
                detail = f"{len(records)} valid sample(s) refused by a sink: {exc.detail}"
                batch.dead.append(letter_of(tp, message, "sink_refused", detail))
                batch.reasons["sink_refused"] += 1
                batch.valid -= len(records)
                log.warning(
                    "ingest: partition %d offset %d: %s", tp.partition, message.offset, detail
                )
            if refused:
                gone = {id(group) for group, _exc in refused}
                groups = [group for group in groups if id(group) not in gone]
        for tp, offset in batch.offsets.items():
            self._sunk[tp] = max(self._sunk.get(tp, -1), offset)

    def _retry_transient(self, flush: Callable[[], None]) -> None:
        retry_paused(
            self.runtime.consumer,
            flush,
            TransientSinkError,
            self.config.backoff_max_s,
            log,
            "ingest",
            "sinks are back",
            self.metrics.set_lag,
        )

    def _rewinds(self, offsets: dict[Any, int]) -> dict[Any, int]:
        """Per partition, the earliest offset its open windows still need."""
        out = {}
        for tp, offset in offsets.items():
            found = None
            if self.features is not None:
                found = self.features.rewind_offset(list(self._machines_of.get(tp, set())))
            out[tp] = offset if found is None else min(offset, found)
        return out

    def _produce_and_commit(self, batch: _Batch) -> bool:
        """Publish the batch's outputs and commit its offsets; False: refused, rebuilding."""
        runtime = self.runtime

        def produce() -> None:
            runtime.send_letters(self.config.dlq_topic, batch.dead)
            for out in batch.features:
                runtime.send(
                    self.config.features_topic,
                    out.key,
                    out.value,
                    timestamp_ms=out.timestamp_ms,
                )

        offsets = runtime.offsets(batch.offsets, self._rewinds(batch.offsets))
        return runtime.commit(offsets, produce)

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
            idle_exit_s: return after this many seconds without a record, counted only
                while Kafka answers and the consumer has caught up (:mod:`pipeline.idle`).
            on_log: where progress lines go (default: the logger).
        """

        def step(polled: dict[Any, list[Any]], _now: float) -> None:
            self.runtime.rewind(polled)
            if polled:
                with self.metrics.batch_seconds.time():
                    self.process(polled)
            # Every turn, empty polls too: a read_committed consumer skips an aborted
            # transaction's records without returning any, and the gauge must follow.
            self.runtime.lag()

        self.runtime.run(
            stop,
            step,
            lambda rate: self.metrics.line(rate) + self._feature_note(),
            lambda: self.metrics.consumed,
            idle_exit_s=idle_exit_s,
            on_log=on_log,
            done=lambda: max_messages is not None and self.metrics.consumed >= max_messages,
        )
        return self.metrics

    def _feature_note(self) -> str:
        if self.features is None:
            return ""
        return f" features={self.features.emitted} machines={len(self.features.windows)}"
