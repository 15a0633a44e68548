"""The one stage runtime: the Kafka loop that ingest, the scorer and alerting share.

A stage is its state and a ``step`` function; the runtime owns everything that makes its
outputs exactly as durable as its offsets::

    subscribe (rebalance listener: flags only, it runs on kafka-python's IO thread)
    loop:  poll -> stage.step(polled, now)        (the stage calls rewind() and commit())
           -> progress line every log_every_s -> idle exit (pipeline.idle)
    rewind:  a partition that is new, or rebuilt after a refused batch, is sought back to
             the rewind point in its commit metadata and replayed up to its committed
             offset (pipeline.rewind); or to its committed offset; or to the beginning
    commit:  the batch's outputs (records, dead letters) and its offsets, in one Kafka
             transaction (transactional stages) or produced, flushed, then committed;
             a refused transaction is aborted and, after a pause that doubles with each
             refusal in a row (input paused, pipeline.paused), every partition is rebuilt
             from the committed offsets; a fenced producer stops the stage

A record that Kafka refuses for its size is remembered (:attr:`StageRuntime.refused`) so
that the stage replaces it by a dead letter when the batch comes again: a poison record
never stops a partition and never makes the loop spin.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.deadletter import DeadLetter
from pipeline.errors import FencedError, OutputsLostError, PlantwatchError
from pipeline.idle import IdleExit, InputState, consumer_lag, kafka_probe
from pipeline.paused import FIRST_DELAY_S, pause_for
from pipeline.rewind import commit_metadata, parse_rewind

Source = tuple[str, int, int]
"""A consumed record: (topic, partition, offset)."""


@dataclass(frozen=True)
class RuntimeConfig:
    """How a stage's loop behaves.

    Attributes:
        name: the stage's name in log lines and errors (``ingest``, ``score``, ``alert``).
        topic: the input topic.
        poll_timeout_ms: how long one poll waits for records (unless the stage asks less).
        max_poll_records: most records per poll.
        log_every_s: seconds between progress lines.
        backoff_max_s: longest pause after refused batches in a row.
        transactional: outputs and offsets in one Kafka transaction (the producer has a
            ``transactional_id``); else outputs are flushed before the offsets commit.
        role: what one instance is called in errors (default ``name``: "another ingest
            instance ..."; the scorer's is "scorer").
    """

    name: str
    topic: str
    poll_timeout_ms: int = 500
    max_poll_records: int = 2000
    log_every_s: float = 10.0
    backoff_max_s: float = 30.0
    transactional: bool = False
    role: str = ""

    @classmethod
    def of(
        cls, name: str, stage: LoopSettings, transactional: bool = False, role: str = ""
    ) -> RuntimeConfig:
        """The runtime's part of a stage's own configuration."""
        return cls(
            name,
            stage.topic,
            stage.poll_timeout_ms,
            stage.max_poll_records,
            stage.log_every_s,
            stage.backoff_max_s,
            transactional,
            role,
        )


class LoopSettings(Protocol):
    """The loop settings that every stage's configuration carries."""

    @property
    def topic(self) -> str: ...  # noqa: D102
    @property
    def poll_timeout_ms(self) -> int: ...  # noqa: D102
    @property
    def max_poll_records(self) -> int: ...  # noqa: D102
    @property
    def log_every_s(self) -> float: ...  # noqa: D102
    @property
    def backoff_max_s(self) -> float: ...  # noqa: D102


def _nothing(_tp: Any) -> None:
    return None


class StageRuntime:
    """Group membership, rewinds, durable outputs and the loop of one stage.

    Args:
        consumer: a ``KafkaConsumer`` (not yet subscribed; :meth:`run` subscribes it).
        producer: a ``KafkaProducer`` (with a ``transactional_id`` when
            ``config.transactional``; ``init_transactions`` is called here).
        config: loop settings.
        log: the stage's logger.
        forget: drops what the stage holds of a partition (revoked, rewound, rebuilt).
        replay: called with ``(tp, committed_offset)`` when a partition is sought back to
            its rewind point; None: the stage keeps no windows, partitions resume at their
            committed offset.
        on_rebuild: called first when every partition is rebuilt (a refused batch).
        on_lag: the lag gauge's setter.
        fenced: the error raised when another instance took over the transactional id.
        lost: the error raised when Kafka did not acknowledge outputs.
        outputs: what the outputs are called in that error (alerting's: its dead letters).
        forget_on_revoke: call ``forget`` from the rebalance listener for each revoked
            partition (else the stage reacts to :attr:`revoked` in its loop).
        refused_commit_note: what a refused plain offset commit means for this stage (the
            warning's tail); with ``rebuild_on_refused_commit`` every partition is rebuilt.
        clock: monotonic seconds of the loop (progress lines, idle time); injected in tests.
        probe: how idle time asks Kafka about the input (default
            :func:`pipeline.idle.kafka_probe` of the consumer).
    """

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        config: RuntimeConfig,
        log: logging.Logger,
        *,
        forget: Callable[[Any], None] = _nothing,
        replay: Callable[[Any, int], None] | None = None,
        on_rebuild: Callable[[], None] | None = None,
        on_lag: Callable[[int], None] | None = None,
        fenced: type[PlantwatchError] = FencedError,
        lost: type[PlantwatchError] = OutputsLostError,
        forget_on_revoke: bool = False,
        outputs: str = "the batch's outputs",
        refused_commit_note: str = "rebuilding from the committed offsets",
        rebuild_on_refused_commit: bool = True,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[], InputState] | None = None,
    ) -> None:
        self.consumer, self.producer, self.config, self.log = consumer, producer, config, log
        self._forget, self._replay, self._on_rebuild = forget, replay, on_rebuild
        self._on_lag = on_lag
        self._fenced, self._lost = fenced, lost
        self._refused_note = refused_commit_note
        self._outputs = outputs
        self._rebuild_on_refused = rebuild_on_refused_commit
        self._forget_on_revoke = forget_on_revoke
        self.clock = clock
        self._probe = probe
        self.pending_rewind: set[Any] = set()
        self.revoked = threading.Event()
        """Set when partitions were revoked; the stage clears it."""
        self.rebalanced = threading.Event()
        """Set on every revocation and assignment; the stage clears it."""
        self.refused: dict[Source, str] = {}
        """Records Kafka refused for good (their size), with why; see :meth:`send`."""
        self.failures = 0
        """Batches refused in a row (the pause before the next rebuild)."""
        self._errors: list[BaseException] = []
        self._sent = 0  # records sent since the last flush
        if config.transactional:
            producer.init_transactions()

    # --- group membership and rebuilds ---------------------------------------------------
    def subscribe(self) -> None:
        """Join the group; assigned partitions are rewound in the loop, before their records."""
        from kafka import ConsumerRebalanceListener

        runtime = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            # kafka-python runs these on its IO thread, where blocking calls are not
            # allowed: flags and sets only; the loop does the rest.
            def on_partitions_revoked(self, revoked: Any) -> None:
                for tp in revoked:
                    if runtime._forget_on_revoke:
                        runtime._forget(tp)
                    runtime.pending_rewind.discard(tp)
                runtime.revoked.set()
                runtime.rebalanced.set()

            def on_partitions_assigned(self, assigned: Any) -> None:
                runtime.pending_rewind.update(assigned)
                runtime.rebalanced.set()
                runtime.log.info(
                    "%s: assigned %s", runtime.config.name, sorted(tp.partition for tp in assigned)
                )

        self.consumer.subscribe([self.config.topic], listener=_Listener())

    def rebuild_all(self) -> None:
        """Forget every assigned partition's state; each rewinds before its next record.

        After a refused batch the stage's state already holds records that were not
        committed, so it is rebuilt from the committed offsets exactly as after a new
        assignment.
        """
        if self._on_rebuild is not None:
            self._on_rebuild()
        for tp in self.consumer.assignment():
            self._forget(tp)
            self.pending_rewind.add(tp)

    def rewind(self, polled: dict[Any, list[Any]]) -> None:
        """Seek each partition waiting for a rewind back to where its state can be rebuilt.

        With a ``replay`` hook, to the rewind point in the commit metadata (replayed up to
        the committed offset); else to the committed offset; with no commit, to the
        earliest record. Records already polled of such a partition are dropped: the seek
        fetches them again.
        """
        while self.pending_rewind:
            tp = self.pending_rewind.pop()
            if tp not in self.consumer.assignment():
                continue
            committed = self.consumer.committed(tp, metadata=True)
            polled.pop(tp, None)
            self._forget(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
                continue
            rewind = parse_rewind(committed.metadata) if self._replay is not None else None
            if rewind is None or rewind >= committed.offset or self._replay is None:
                self.consumer.seek(tp, committed.offset)
                continue
            self.consumer.seek(tp, rewind)
            self._replay(tp, committed.offset)
            self.log.info(
                "%s: partition %d: replaying offsets %d..%d to rebuild windows",
                self.config.name,
                tp.partition,
                rewind,
                committed.offset,
            )

    # --- durable outputs -------------------------------------------------------------------
    def offsets(
        self, offsets: Mapping[Any, int], rewind: Mapping[Any, int] | None = None
    ) -> dict[Any, Any]:
        """Offsets to commit; with ``rewind`` each carries its rewind point as metadata."""
        from kafka import OffsetAndMetadata

        if rewind is None:
            return {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}
        return {
            tp: OffsetAndMetadata(o, commit_metadata(min(o, rewind.get(tp, o))), -1)
            for tp, o in offsets.items()
        }

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        source: Source | None = None,
    ) -> None:
        """Produce one output record of the batch; its failure fails the batch.

        With ``source`` (the consumed record it came from) a refusal of the record for its
        size (the producer splits a too-large batch down to single records, so
        ``MessageSizeTooLargeError`` names this one) is remembered in :attr:`refused`, so
        that the rebuilt batch carries a dead letter instead. A record over the producer's
        own limit raises ``MessageSizeTooLargeError`` here, unsent.
        """
        extra: dict[str, Any] = {}
        if headers is not None:
            extra["headers"] = headers
        if partition is not None:
            extra["partition"] = partition
        if timestamp_ms is not None:
            extra["timestamp_ms"] = timestamp_ms
        future = self.producer.send(topic, key=key, value=value, **extra)
        self._sent += 1
        future.add_errback(functools.partial(self._failed, source))

    def send_letters(self, topic: str, letters: Iterable[DeadLetter]) -> None:
        """Produce dead letters (see :meth:`send`)."""
        for letter in letters:
            self.send(topic, letter.key, letter.value, headers=letter.headers)

    def _failed(self, source: Source | None, exc: BaseException) -> None:
        from kafka.errors import MessageSizeTooLargeError

        self._errors.append(exc)
        if source is not None and isinstance(exc, MessageSizeTooLargeError):
            self.refused[source] = f"Kafka refused it ({type(exc).__name__}: {exc})"

    def commit(
        self,
        offsets: dict[Any, Any],
        produce: Callable[[], None],
        *,
        before_commit: Callable[[], None] | None = None,
    ) -> bool:
        """Make a batch's outputs durable and commit its offsets; False: dropped, rebuilding.

        Args:
            offsets: from :meth:`offsets`.
            produce: sends the batch's outputs (:meth:`send`, :meth:`send_letters`).
            before_commit: runs once the outputs are durable, before the offsets commit
                (plain stages: e.g. a store transaction that records the offsets too).

        Raises:
            PlantwatchError: ``fenced`` when another instance took the transactional id;
                ``lost`` when a plain stage's outputs were not acknowledged.
        """
        if self.config.transactional:
            return self._transaction(offsets, produce)
        from kafka.errors import CommitFailedError

        self._sent = 0
        produce()
        if self._sent:  # (a batch without outputs needs no producer)
            self.producer.flush()
        self._raise_lost()
        if before_commit is not None:
            before_commit()
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced (or dropped this member while the broker was away) before
            # Kafka took the commit. The outputs are durable; records come again.
            self.log.warning(
                "%s: Kafka refused the offset commit (%s: the group moved on); %s",
                self.config.name,
                type(exc).__name__,
                self._refused_note,
            )
            if self._rebuild_on_refused:
                self.rebuild_all()
            return False
        return True

    def _transaction(self, offsets: dict[Any, Any], produce: Callable[[], None]) -> bool:
        from kafka.errors import KafkaError, ProducerFencedError

        name = self.config.name
        try:
            self.producer.begin_transaction()
            produce()
            # Every send answered before the commit: kafka-python may fail a send (its
            # delivery timeout) and still commit the transaction without that record.
            self.producer.flush()
            if self._errors:
                first = self._errors[0]
                if isinstance(first, KafkaError):
                    raise first
                raise KafkaError(f"a send failed: {type(first).__name__}: {first}")
            self.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
            self.producer.commit_transaction()
        except ProducerFencedError as exc:
            raise self._fenced(
                f"another {self.config.role or name} instance with the same transactional id "
                "took over; give each "
                "instance its own PLANTWATCH_INSTANCE_ID"
            ) from exc
        except KafkaError as exc:
            with contextlib.suppress(KafkaError):
                self.producer.abort_transaction()
            self._errors.clear()  # after the abort: every send of the batch has answered
            self.failures += 1
            # (the exponent is capped: a day-long outage must not overflow the float)
            doublings = min(self.failures - 1, 62)
            delay = min(FIRST_DELAY_S * 2**doublings, self.config.backoff_max_s)
            self.log.warning(
                "%s: batch not committed (%s: %s); rebuilding from the committed offsets in %.1fs",
                name,
                type(exc).__name__,
                exc,
                delay,
            )
            pause_for(self.consumer, delay)
            self.rebuild_all()
            return False
        self._raise_lost(" after committing it")
        self.failures = 0
        return True

    def _raise_lost(self, when: str = "; the batch was not committed") -> None:
        if self._errors:
            first = self._errors[0]
            self._errors.clear()
            raise self._lost(
                f"Kafka did not acknowledge {self._outputs} ({type(first).__name__}: {first}){when}"
            )

    def lag(self) -> None:
        """Set the lag gauge from the consumer's positions (every poll, empty ones too)."""
        if self._on_lag is not None:
            self._on_lag(consumer_lag(self.consumer))

    # --- the loop ------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event,
        step: Callable[[dict[Any, list[Any]], float], None],
        line: Callable[[float], str],
        count: Callable[[], int],
        *,
        idle_exit_s: float | None = None,
        on_log: Callable[[str], None] | None = None,
        poll_ms: Callable[[], int] | None = None,
        busy: Callable[[], bool] | None = None,
        done: Callable[[], bool] | None = None,
        drain: Callable[[], None] | None = None,
        closing: Callable[[float], str] | None = None,
    ) -> None:
        """Poll and step until ``stop`` is set, ``done()``, or the input has been idle.

        Args:
            stop: set it (e.g. from a signal handler) to finish the current batch.
            step: the stage's work on one poll's records (possibly none).
            line: the progress line at a given rate (records/s).
            count: records consumed so far (for the rate).
            idle_exit_s: return after this many seconds without a record, counted only
                while Kafka answers and the consumer has caught up (:mod:`pipeline.idle`)
                and the stage is not ``busy()``.
            on_log: where progress lines go (default: the stage's logger).
            poll_ms: how long the next poll may wait (default ``config.poll_timeout_ms``).
            busy: whether the stage holds work not yet committed.
            done: whether to stop now (e.g. a record count reached).
            drain: finishes pending work when the loop ends.
            closing: the last line (default ``line`` at the whole run's rate).
        """
        cfg = self.config
        emit = on_log or self.log.info
        self.subscribe()
        idle = IdleExit(
            idle_exit_s,
            self._probe or kafka_probe(self.consumer),
            lambda m: self.log.warning("%s: %s", cfg.name, m),
            clock=self.clock,
        )
        start = last_log = self.clock()
        logged = 0
        while not stop.is_set():
            wait = poll_ms() if poll_ms is not None else cfg.poll_timeout_ms
            polled = self.consumer.poll(timeout_ms=wait, max_records=cfg.max_poll_records)
            now = self.clock()
            step(polled, now)
            if now - last_log >= cfg.log_every_s:
                emit(line((count() - logged) / (now - last_log)))
                last_log, logged = now, count()
            if done is not None and done():
                break
            # Asked every turn (records reset it); due only while Kafka answers and the
            # consumer is caught up: a broker outage or a rebalance is not idle time.
            if idle.due(bool(polled)) and not (busy is not None and busy()):
                break
        if drain is not None:
            drain()
        elapsed = max(self.clock() - start, 1e-9)
        emit((closing or line)(count() / elapsed))
