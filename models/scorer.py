"""The scorer stage: feature records in, one prediction per machine per step out.

::

    poll -> decode (bad or foreign-config records -> DLQ) -> normalize -> per-machine window
         -> pending batch (windows of many machines)
    when max_batch windows are pending, the oldest waited max_wait_ms, or the input is
    drained (nothing arrived for drained_ms while the model thread is idle):
         -> model calls of pinned sizes -> predictions (+ top sensors)
         -> one Kafka transaction: predictions, dead letters, offsets (+ rewind metadata)
    between batches: take a new model if the watcher has one ready

On assignment (start, rebalance, or a swap to a model with other normalization) each
partition is sought back to the rewind offset in its commit metadata and replayed up to
its committed offset: windows (and, for a model with the age feature, ages) are rebuilt
without re-emitting a prediction, and the partition's commit stands until the replay
reaches that offset (:func:`ingest.featurestage.settle_replay`). A failed transaction
(e.g. the group rebalanced while a batch was pending) drops the batch and, after a pause
that grows with each failure in a row (0.5 s doubling to ``backoff_max_s``, the input
paused meanwhile), rebuilds all windows the same way.

A prediction that Kafka can never take never stops a partition nor makes the loop spin: one
that cannot be encoded, has no finite probability, or is larger than the producer or the
broker takes, is replaced by a dead letter of the feature record that closed its window
(reason ``prediction_refused``, on the features DLQ); when the broker refuses it inside a
transaction, the transaction is dropped and the rebuilt batch carries the letter instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from features.config import WindowConfig
from models.buffers import MachineBuffers
from models.errors import ModelError
from models.hotswap import ModelWatcher
from models.predictions import Prediction, encode_prediction
from models.scoremetrics import ScorerMetrics
from models.scoring import Batch, Batcher, refuse, score
from models.servable import Servable, describe
from pipeline.idle import IdleExit, consumer_lag, kafka_probe
from pipeline.partitions import KeyPartitions
from pipeline.paused import FIRST_DELAY_S, pause_for
from pipeline.rewind import commit_metadata, parse_rewind

log = logging.getLogger("plantwatch.score")


class ScorerKafkaError(ModelError):
    """Kafka refused a batch's transaction for good (e.g. this instance was fenced)."""


@dataclass(frozen=True)
class ScorerConfig:
    """How the scorer loop behaves (see ``plantwatch score --help``)."""

    topic: str = "features"
    predictions_topic: str = "predictions"
    dlq_topic: str = "features.dlq"
    max_batch: int = 1024
    max_wait_ms: int = 200
    drained_ms: int = 20
    poll_timeout_ms: int = 500
    max_poll_records: int = 2000
    attribution_fraction: float = 0.5
    log_every_s: float = 10.0
    backoff_max_s: float = 30.0


@dataclass
class _Flight:
    """A closed batch being scored, with the offsets it will commit."""

    batch: Batch
    commit: dict[Any, Any]
    future: Future[list[Prediction]]
    model: Servable


class ScorerService:
    """Runs the scorer loop over a kafka-python consumer and a transactional producer.

    Args:
        consumer: a ``KafkaConsumer`` (read_committed, no auto commit; ``run`` subscribes).
        producer: a ``KafkaProducer`` with a ``transactional_id``.
        servable: the model to start with.
        window: the feature rules in use (records with another fingerprint are refused).
        config: loop settings.
        metrics: counters (a fresh set by default).
        watcher: finds new models (None: no hot swap).
    """

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        servable: Servable,
        window: WindowConfig,
        config: ScorerConfig,
        metrics: ScorerMetrics | None = None,
        watcher: ModelWatcher | None = None,
    ) -> None:
        self._consumer, self._producer = consumer, producer
        self.model = servable
        self.window = window
        self.fingerprint = window.fingerprint()
        self.config = config
        self.metrics = metrics or ScorerMetrics()
        self.watcher = watcher
        self.batcher = Batcher(self._new_buffers(), self.fingerprint, self.window)
        self._pending_rewind: set[Any] = set()
        self._revoked = threading.Event()
        self._errors: list[BaseException] = []
        # Feature records (topic, partition, offset) whose prediction the broker refused for
        # good, with why: the rebuilt batch dead-letters them instead (see finish).
        self._refused: dict[tuple[str, int, int], str] = {}
        self._failures = 0  # transactions refused in a row (the pause before a rebuild)
        self._partitions = KeyPartitions()
        producer.init_transactions()

    def _new_buffers(self) -> MachineBuffers:
        n_features = len(self.window.feature_names())
        return MachineBuffers(self.model.length, n_features, self.window.step_ms)

    # --- group membership and rebuilds ---------------------------------------------------
    def subscribe(self) -> None:
        """Join the group; assignments are rewound in the loop (callbacks run on the IO thread)."""
        from kafka import ConsumerRebalanceListener

        service = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                service._revoked.set()

            def on_partitions_assigned(self, assigned: Any) -> None:
                service._pending_rewind.update(assigned)
                log.info("score: assigned %s", sorted(tp.partition for tp in assigned))

        self._consumer.subscribe([self.config.topic], listener=_Listener())

    def rebuild_all(self) -> None:
        """Forget every window; rewind every assigned partition before its next record."""
        self.batcher = Batcher(self._new_buffers(), self.fingerprint, self.window)
        self._pending_rewind.update(self._consumer.assignment())

    def _rewind(self, polled: dict[Any, list[Any]]) -> None:
        while self._pending_rewind:
            tp = self._pending_rewind.pop()
            if tp not in self._consumer.assignment():
                continue
            committed = self._consumer.committed(tp, metadata=True)
            polled.pop(tp, None)
            self.batcher.forget_partition(tp)
            if committed is None:
                self._consumer.seek_to_beginning(tp)
                continue
            rewind = parse_rewind(committed.metadata)
            self._consumer.seek(tp, rewind if rewind is not None else committed.offset)
            if rewind is not None and rewind < committed.offset:
                self.batcher.replay_until[tp] = committed.offset
                log.info(
                    "score: partition %d: replaying offsets %d..%d to rebuild windows",
                    tp.partition,
                    rewind,
                    committed.offset,
                )

    def _commit_offsets(self, offsets: dict[Any, int]) -> dict[Any, Any]:
        from kafka import OffsetAndMetadata

        age = self.model.artifact.meta.age_scale is not None
        now = time.monotonic()
        out = {}
        for tp, offset in offsets.items():
            found = self.batcher.rewind_offset(tp, segment=age, now=now)
            rewind = offset if found is None else min(offset, found)
            out[tp] = OffsetAndMetadata(offset, commit_metadata(rewind), -1)
        return out

    def launch(self, batch: Batch, pool: ThreadPoolExecutor) -> _Flight:
        """Close the batch: fix its commit (rewind) now, score it on the model thread."""
        commit = self._commit_offsets(batch.offsets)
        return _Flight(
            batch,
            commit,
            pool.submit(
                score, batch, self.model, self.window.step_ms, self.config.attribution_fraction
            ),
            self.model,
        )

    def _outputs(self, preds: list[Prediction], batch: Batch) -> list[tuple[int, bytes, bytes]]:
        """The batch's prediction records ``(window index, key, value)``.

        A prediction that cannot be encoded, has no finite probability, or whose feature
        record the broker refused before (:attr:`_refused`) is replaced by a dead letter of
        that feature record.
        """
        out = []
        for i, p in enumerate(preds):
            tp, message = batch.sources[i]
            why = self._refused.get((tp.topic, tp.partition, message.offset))
            if why is None and not math.isfinite(p.probability):
                why = f"the model gave no finite probability ({p.probability})"
            if why is None:
                try:
                    out.append((i, p.equipment_id.encode(), encode_prediction(p)))
                    continue
                except (TypeError, ValueError) as exc:  # orjson's, UnicodeEncodeError
                    why = f"it cannot be encoded ({type(exc).__name__}: {exc})"
            self._prediction_refused(batch, i, p, why)
        return out

    def _prediction_refused(self, batch: Batch, i: int, p: Prediction, why: str) -> None:
        """Dead-letter the feature record that closed window ``i`` instead of its prediction."""
        tp, message = batch.sources[i]
        detail = f"prediction of {p.equipment_id!r} at {p.window_end} not published: {why}"
        log.warning("score: partition %d offset %d: %s", tp.partition, message.offset, detail)
        refuse(batch, tp, message, "prediction_refused", detail)

    def _failed_send(self, source: tuple[str, int, int] | None, exc: BaseException) -> None:
        """Errback of a send (kafka-python's IO thread): keep it; a too-large one for good.

        The producer splits a batch that the broker finds too large down to single records,
        so :class:`~kafka.errors.MessageSizeTooLargeError` on a send names that record.
        """
        from kafka.errors import MessageSizeTooLargeError

        self._errors.append(exc)
        if source is not None and isinstance(exc, MessageSizeTooLargeError):
            self._refused[source] = f"Kafka refused it ({type(exc).__name__}: {exc})"

    def finish(self, flight: _Flight) -> bool:
        """Commit a scored batch in one transaction; False if it was dropped (rebuild).

        Kafka's refusal of the transaction (or of a record in it) drops the batch and, after
        a growing pause with the input paused, rebuilds the windows from the committed
        offsets; a prediction record Kafka refused for its size is dead-lettered in the
        rebuilt batch. Only a fenced producer stops the loop.
        """
        from kafka.errors import KafkaError, MessageSizeTooLargeError, ProducerFencedError

        preds = flight.future.result()
        batch = flight.batch
        self.batcher.recycle(batch)
        records = self._outputs(preds, batch)
        topic = self.config.predictions_topic
        sent = 0
        try:
            partitions = self._producer.partitions_for(topic)
            self._producer.begin_transaction()
            for i, key, value in records:
                tp, message = batch.sources[i]
                try:
                    future = self._producer.send(
                        topic, key=key, value=value, partition=self._partitions.of(key, partitions)
                    )
                except MessageSizeTooLargeError as exc:  # over max_request_size: not sent
                    self._prediction_refused(batch, i, preds[i], f"{type(exc).__name__}: {exc}")
                    continue
                source = (tp.topic, tp.partition, message.offset)
                future.add_errback(functools.partial(self._failed_send, source))
                sent += 1
            for d in batch.dead:
                self._producer.send(
                    self.config.dlq_topic, key=d.key, value=d.value, headers=d.headers
                ).add_errback(functools.partial(self._failed_send, None))
            # Every send answered before the commit: kafka-python may fail a send (its
            # delivery timeout) and still commit the transaction without that record.
            self._producer.flush()
            if self._errors:
                first = self._errors[0]
                if isinstance(first, KafkaError):
                    raise first
                raise KafkaError(f"a send failed: {type(first).__name__}: {first}")
            self._producer.send_offsets_to_transaction(
                flight.commit, self._consumer.group_metadata()
            )
            self._producer.commit_transaction()
        except ProducerFencedError as exc:
            raise ScorerKafkaError(
                "another scorer instance with the same transactional id took over; give each "
                "instance its own PLANTWATCH_INSTANCE_ID"
            ) from exc
        except KafkaError as exc:
            with contextlib.suppress(KafkaError):
                self._producer.abort_transaction()
            self._errors.clear()  # after the abort: every send of the batch has answered
            self._failures += 1
            delay = min(FIRST_DELAY_S * 2 ** (self._failures - 1), self.config.backoff_max_s)
            log.warning(
                "score: batch not committed (%s: %s); rebuilding from the committed offsets "
                "in %.1fs",
                type(exc).__name__,
                exc,
                delay,
            )
            pause_for(self._consumer, delay)
            self.rebuild_all()
            return False
        if self._errors:
            first = self._errors[0]
            raise ScorerKafkaError(
                f"Kafka did not acknowledge the batch's outputs ({type(first).__name__}: "
                f"{first}) after committing it"
            )
        self._failures = 0
        for tp, message in batch.sources:
            self._refused.pop((tp.topic, tp.partition, message.offset), None)
        self.metrics.model_seconds.observe(batch.model_seconds)
        self.metrics.add(
            batch.records, sent, batch.warming, batch.duplicates, batch.reasons, batch.silent
        )
        self.metrics.set_lag(consumer_lag(self._consumer))
        return True

    def _swap(self) -> bool:
        """Take a ready new model; True when windows are rebuilt (drop the pending batch)."""
        new = self.watcher.take() if self.watcher is not None else None
        if new is None:
            return False
        old = self.model
        if new.length != old.length:
            self.watcher.refused[new.version] = "other sequence length"  # type: ignore[union-attr]
            self.watcher.current = old.version  # type: ignore[union-attr]
            log.error(
                "score: refused model %s: its sequence length %d differs from the served %d "
                "(restart the scorer to serve it); still serving %s",
                new.version,
                new.length,
                old.length,
                old.version,
            )
            return False
        self.model = new
        log.info("score: model swap %s -> %s %s", old.version, new.version, describe(new))
        same_rules = new.artifact.meta.min_steps == old.artifact.meta.min_steps
        if new.artifact.spec == old.artifact.spec and same_rules:
            return False
        self.rebuild_all()  # other normalization: rebuild windows from the topic
        return True

    # --- the loop ------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event,
        *,
        idle_exit_s: float | None = None,
        on_log: Callable[[str], None] | None = None,
    ) -> ScorerMetrics:
        """Consume until ``stop`` is set (or nothing arrived for ``idle_exit_s`` seconds).

        One batch at a time is scored on a model thread while the next one fills; batches
        commit in order, the next closes only after the previous one committed. Idle time
        counts only while Kafka answers and the consumer has caught up (pipeline.idle).
        """
        emit = on_log or log.info
        cfg = self.config
        self.subscribe()
        batch, flight = Batch(), None
        idle = IdleExit(
            idle_exit_s, kafka_probe(self._consumer), lambda m: log.warning("score: %s", m)
        )
        last_log, logged = time.monotonic(), 0
        pool = ThreadPoolExecutor(1, thread_name_prefix="score-model")
        try:
            while not stop.is_set():
                wait = cfg.poll_timeout_ms if flight is None else 5
                if batch.since is not None:
                    left = cfg.max_wait_ms - (time.monotonic() - batch.since) * 1000
                    wait = int(max(0, min(wait, left, cfg.drained_ms)))
                polled = self._consumer.poll(timeout_ms=wait, max_records=cfg.max_poll_records)
                if self._revoked.is_set():
                    # Pending batches may hold records of revoked partitions: drop them and
                    # rebuild from the committed offsets (eager rebalances reassign all).
                    self._revoked.clear()
                    if flight is not None:
                        flight.future.result()
                    flight, batch = None, Batch()
                    self.rebuild_all()
                self._rewind(polled)
                now = time.monotonic()
                if polled:
                    self.batcher.add(polled, batch, self.model)
                    if batch.since is None and batch.offsets:  # (a replay commits nothing)
                        batch.since = now
                else:  # commits set the gauge; an empty poll may still move the position
                    self.metrics.set_lag(consumer_lag(self._consumer))  # (aborted records)
                if flight is not None and flight.future.done():
                    batch = batch if self.finish(flight) else Batch()
                    flight = None
                # Due when the oldest record waited max_wait_ms, or when the input is drained:
                # nothing arrived for drained_ms and the model is idle (a burst of steps that
                # close together, smaller than max_batch, need not wait out max_wait_ms).
                drained = not polled and flight is None and wait >= cfg.drained_ms
                due = batch.since is not None and (
                    drained or (now - batch.since) * 1000 >= cfg.max_wait_ms
                )
                if batch.offsets and (len(batch.windows) >= cfg.max_batch or due):
                    if flight is not None:
                        if not self.finish(flight):
                            batch = Batch()
                        flight = None
                    if batch.offsets:
                        flight, batch = self.launch(batch, pool), Batch()
                if flight is None and self._swap():
                    batch = Batch()
                if now - last_log >= cfg.log_every_s:
                    emit(self._line((self.metrics.records - logged) / (now - last_log)))
                    last_log, logged = now, self.metrics.records
                # Asked every turn (records reset it); due only while Kafka answers and the
                # consumer is caught up (pipeline.idle): a broker outage is not idle time.
                if idle.due(bool(polled)) and flight is None and not batch.offsets:
                    break
            done = self.finish(flight) if flight is not None else True
            if done and batch.offsets:
                self.finish(self.launch(batch, pool))
        finally:
            pool.shutdown(wait=True)
        emit(self._line(0.0))
        return self.metrics

    def _line(self, rate: float) -> str:
        m = self.model
        return self.metrics.line(rate, m.device, m.calls, m.call_seconds) + f" model={m.version}"
