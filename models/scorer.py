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
reaches that offset (:func:`pipeline.rewind.settle_replay`). A failed transaction
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
from models.scoremetrics import ScorerMetrics
from models.scoring import Batch, Batcher, refuse, score
from models.servable import Servable, describe
from pipeline.partitions import KeyPartitions
from pipeline.predictions import Prediction, encode_prediction
from pipeline.runtime import RuntimeConfig, StageRuntime

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
        self.model = servable
        self.window = window
        self.fingerprint = window.fingerprint()
        self.config = config
        self.metrics = metrics or ScorerMetrics()
        self.watcher = watcher
        self.batcher = Batcher(self._new_buffers(), self.fingerprint, self.window)
        self._partitions = KeyPartitions()
        self._batch: Batch = Batch()
        self._flight: _Flight | None = None
        self._wait = 0
        self.runtime = StageRuntime(
            consumer,
            producer,
            RuntimeConfig.of("score", config, True, role="scorer"),
            log,
            forget=lambda tp: self.batcher.forget_partition(tp),
            replay=lambda tp, until: self.batcher.replay_until.__setitem__(tp, until),
            on_rebuild=self._new_batcher,
            on_lag=self.metrics.set_lag,
            fenced=ScorerKafkaError,
            lost=ScorerKafkaError,
        )

    def _new_buffers(self) -> MachineBuffers:
        n_features = len(self.window.feature_names())
        return MachineBuffers(self.model.length, n_features, self.window.step_ms)

    def _new_batcher(self) -> None:
        """Forget every window (a rebuild from the committed offsets follows)."""
        self.batcher = Batcher(self._new_buffers(), self.fingerprint, self.window)

    def _commit_offsets(self, offsets: dict[Any, int]) -> dict[Any, Any]:
        age = self.model.artifact.meta.age_scale is not None
        now = time.monotonic()
        rewinds = {}
        for tp, offset in offsets.items():
            found = self.batcher.rewind_offset(tp, segment=age, now=now)
            rewinds[tp] = offset if found is None else min(offset, found)
        commit: dict[Any, Any] = self.runtime.offsets(offsets, rewinds)
        return commit

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
        record the broker refused before (``runtime.refused``) is replaced by a dead letter of
        that feature record.
        """
        out = []
        for i, p in enumerate(preds):
            tp, message = batch.sources[i]
            why = self.runtime.refused.get((tp.topic, tp.partition, message.offset))
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

    def finish(self, flight: _Flight) -> bool:
        """Commit a scored batch in one transaction; False if it was dropped (rebuild).

        Kafka's refusal of the transaction (or of a record in it) drops the batch and, after
        a growing pause with the input paused, rebuilds the windows from the committed
        offsets (:meth:`pipeline.runtime.StageRuntime.commit`); a prediction record Kafka
        refused for its size is dead-lettered in the rebuilt batch. Only a fenced producer
        stops the loop.
        """
        from kafka.errors import MessageSizeTooLargeError

        preds = flight.future.result()
        batch = flight.batch
        self.batcher.recycle(batch)
        records = self._outputs(preds, batch)
        topic = self.config.predictions_topic
        runtime = self.runtime
        sent = 0

        def produce() -> None:
            nonlocal sent
            partitions = runtime.producer.partitions_for(topic)
            for i, key, value in records:
                tp, message = batch.sources[i]
                try:
                    runtime.send(
                        topic,
                        key,
                        value,
                        partition=self._partitions.of(key, partitions),
                        source=(tp.topic, tp.partition, message.offset),
                    )
                except MessageSizeTooLargeError as exc:  # over max_request_size: not sent
                    self._prediction_refused(batch, i, preds[i], f"{type(exc).__name__}: {exc}")
                    continue
                sent += 1
            runtime.send_letters(self.config.dlq_topic, batch.dead)

        if not runtime.commit(flight.commit, produce):
            return False
        for tp, message in batch.sources:
            runtime.refused.pop((tp.topic, tp.partition, message.offset), None)
        self.metrics.model_seconds.observe(batch.model_seconds)
        self.metrics.add(
            batch.records, sent, batch.warming, batch.duplicates, batch.reasons, batch.silent
        )
        runtime.lag()
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
        self.runtime.rebuild_all()  # other normalization: rebuild windows from the topic
        return True

    # --- the loop ------------------------------------------------------------------------
    def _poll_ms(self) -> int:
        """How long the next poll may wait: less while a batch fills or one is scored."""
        cfg = self.config
        wait = cfg.poll_timeout_ms if self._flight is None else 5
        if self._batch.since is not None:
            left = cfg.max_wait_ms - (time.monotonic() - self._batch.since) * 1000
            wait = int(max(0, min(wait, left, cfg.drained_ms)))
        self._wait = wait
        return wait

    def _step(self, polled: dict[Any, list[Any]], pool: ThreadPoolExecutor) -> None:
        cfg = self.config
        if self.runtime.revoked.is_set():
            # Pending batches may hold records of revoked partitions: drop them and
            # rebuild from the committed offsets (eager rebalances reassign all).
            self.runtime.revoked.clear()
            if self._flight is not None:
                self._flight.future.result()
            self._flight, self._batch = None, Batch()
            self.runtime.rebuild_all()
        self.runtime.rewind(polled)
        now = time.monotonic()
        if polled:
            self.batcher.add(polled, self._batch, self.model)
            if self._batch.since is None and self._batch.offsets:  # (a replay commits nothing)
                self._batch.since = now
        else:  # commits set the gauge; an empty poll may still move the position
            self.runtime.lag()  # (aborted records)
        if self._flight is not None and self._flight.future.done():
            self._batch = self._batch if self.finish(self._flight) else Batch()
            self._flight = None
        # Due when the oldest record waited max_wait_ms, or when the input is drained:
        # nothing arrived for drained_ms and the model is idle (a burst of steps that
        # close together, smaller than max_batch, need not wait out max_wait_ms).
        batch = self._batch
        drained = not polled and self._flight is None and self._wait >= cfg.drained_ms
        due = batch.since is not None and (drained or (now - batch.since) * 1000 >= cfg.max_wait_ms)
        if batch.offsets and (len(batch.windows) >= cfg.max_batch or due):
            if self._flight is not None:
                if not self.finish(self._flight):
                    self._batch = Batch()
                self._flight = None
            if self._batch.offsets:
                self._flight, self._batch = self.launch(self._batch, pool), Batch()
        if self._flight is None and self._swap():
            self._batch = Batch()

    def _drain(self, pool: ThreadPoolExecutor) -> None:
        done = self.finish(self._flight) if self._flight is not None else True
        self._flight = None
        if done and self._batch.offsets:
            self.finish(self.launch(self._batch, pool))
        self._batch = Batch()

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
        self._batch, self._flight = Batch(), None
        pool = ThreadPoolExecutor(1, thread_name_prefix="score-model")
        try:
            self.runtime.run(
                stop,
                lambda polled, _now: self._step(polled, pool),
                self._line,
                lambda: self.metrics.records,
                idle_exit_s=idle_exit_s,
                on_log=on_log,
                poll_ms=self._poll_ms,
                busy=lambda: self._flight is not None or bool(self._batch.offsets),
                drain=lambda: self._drain(pool),
                closing=lambda _rate: self._line(0.0),
            )
        finally:
            pool.shutdown(wait=True)
        return self.metrics

    def _line(self, rate: float) -> str:
        m = self.model
        return self.metrics.line(rate, m.device, m.calls, m.call_seconds) + f" model={m.version}"
