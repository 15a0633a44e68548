"""A fake kafka-python consumer for the pure-logic tests of the stage loops.

One partition, a log of messages handed out in polls of at most ``chunk`` records; the
group assigns the partition on the first poll. Most tests keep their own producer fake
(what a commit does is what they check); :class:`TransactionalProducer` is the one that
hands its commits back to the consumer, for tests that restart a stage.

The tests of the stage runtime itself (``pipeline.runtime``, no stage) use
:class:`GroupConsumer` (several partitions, scripted polls, refused offset commits) and
:class:`RecordingProducer` (plain or transactional, failed sends, refused commits), which
log their calls in order to one shared ``events`` list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition


@dataclass
class Message:
    """What the loops read of a ``ConsumerRecord``."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class _Pausing:
    """What both fake consumers answer alike: the group and pausing."""

    paused_tps: set[TopicPartition]

    def group_metadata(self) -> str:
        return "group"

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps |= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps -= set(tps)


class FakeConsumer(_Pausing):
    """Args:
    tp: the one partition.
    values: the log's message values (key ``b"m"``, timestamp ``timestamp``).
    chunk: most records per poll (also bounded by the poll's ``max_records``).
    sleep_when_empty: an empty poll takes its timeout in wall time, as a real one does.
    on_poll: called with the consumer after each poll (e.g. to set a loop's stop event).
    aborted_tail: offsets after the log that a read_committed consumer skips (an aborted
        transaction's records): the high watermark counts them, and the first empty poll
        at the end of the log moves the position past them without returning a record.

    ``highwater`` is the end that the last poll's fetch reported; a paused partition is not
    fetched, so it stands still while ``log`` grows (``end_offsets`` asks "the broker").
    """

    def __init__(
        self,
        tp: TopicPartition,
        values: list[bytes],
        chunk: int = 1 << 30,
        timestamp: int = 0,
        sleep_when_empty: bool = False,
        aborted_tail: int = 0,
        on_poll: Callable[[FakeConsumer], object] | None = None,
    ) -> None:
        self.tp = tp
        self.log = [Message(i, b"m", v, timestamp) for i, v in enumerate(values)]
        self.chunk, self.sleep_when_empty = chunk, sleep_when_empty
        self.aborted_tail = aborted_tail
        self.empty_polls = 0
        self.polls = 0
        self.on_poll = on_poll
        self.offset = 0  # the next record to hand out
        self.committed_offset: int | None = None
        self.committed_metadata = ""  # e.g. a stage's rewind point
        self.listener: Any = None
        self.drained_at: float | None = None
        self.paused_tps: set[TopicPartition] = set()
        self.fetched_high = 0  # the high watermark the last fetch reported

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def poll(self, timeout_ms: int, max_records: int = 500) -> dict[Any, list[Message]]:
        got = self._poll(timeout_ms, max_records)
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self)
        return got

    def _poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Message]]:
        if self.listener is not None:
            self.listener.on_partitions_assigned({self.tp})
            self.listener = None
        if self.tp in self.paused_tps:
            return {}  # nothing fetched: the high watermark stands still, as kafka-python's
        self.fetched_high = len(self.log) + self.aborted_tail
        got = self.log[self.offset : self.offset + min(self.chunk, max_records)]
        self.offset += len(got)
        if got:
            return {self.tp: got}
        self.offset = max(self.offset, self.fetched_high)  # past the aborted tail
        self.empty_polls += 1
        if self.drained_at is None:
            self.drained_at = time.monotonic()
        if self.sleep_when_empty:
            time.sleep(timeout_ms / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    def committed(self, tp: TopicPartition, metadata: bool = False) -> Any:
        if self.committed_offset is None:
            return None
        return OffsetAndMetadata(self.committed_offset, self.committed_metadata, -1)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.tp in offsets:
            self.committed_offset = offsets[self.tp].offset
            self.committed_metadata = offsets[self.tp].metadata

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.offset = offset

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.offset = 0

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self.offset

    def highwater(self, tp: TopicPartition) -> int:
        return self.fetched_high

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> Any:
        """The broker's end: records appended to ``log`` after the last poll included."""
        return {tp: len(self.log) + self.aborted_tail for tp in tps}


class FakeFuture:
    """A send's future; without ``exc`` its errbacks are called only by :meth:`fail`.

    Args:
        exc: the send failed already: each errback is called with it at once, as
            kafka-python does for a future that failed before ``add_errback``.
    """

    def __init__(self, exc: BaseException | None = None) -> None:
        self.exc = exc
        self.errbacks: list[Callable[[BaseException], object]] = []

    def add_errback(self, fn: Any) -> FakeFuture:
        if self.exc is not None:
            fn(self.exc)
        else:
            self.errbacks.append(fn)
        return self

    def fail(self, exc: BaseException) -> None:
        """The delivery failed (e.g. answered during the producer's ``flush``)."""
        self.exc = exc
        for fn in self.errbacks:
            fn(exc)
        self.errbacks = []


class TransactionalProducer:
    """A transactional producer whose commits become the consumer's committed offset and
    metadata, as a restarted stage reads them; what it published to ``topic`` is kept.

    Args:
        consumer: the consumer whose one partition's commits these are.
        topic: the output topic to keep (``published``, in commit order).
    """

    def __init__(self, consumer: FakeConsumer, topic: str) -> None:
        self.consumer, self.topic = consumer, topic
        self.pending: list[bytes] = []
        self.offsets: Any = None
        self.published: list[bytes] = []
        self.commits: list[int] = []

    def init_transactions(self) -> None:
        pass

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def begin_transaction(self) -> None:
        self.pending, self.offsets = [], None

    def send(self, topic: str, key: Any = None, value: Any = None, **_: Any) -> FakeFuture:
        if topic == self.topic:
            self.pending.append(value)
        return FakeFuture()

    def flush(self) -> None:
        pass

    def send_offsets_to_transaction(self, offsets: Any, group: Any) -> None:
        self.offsets = offsets

    def commit_transaction(self) -> None:
        self.published += self.pending
        if self.consumer.tp in self.offsets:
            commit = self.offsets[self.consumer.tp]
            self.commits.append(commit.offset)
            self.consumer.committed_offset = commit.offset
            self.consumer.committed_metadata = commit.metadata

    def abort_transaction(self) -> None:
        self.pending = []


class GroupConsumer(_Pausing):
    """A consumer of several partitions with scripted polls, that logs what it is asked.

    Args:
        assigned: the partitions the group assigns, handed to the rebalance listener in the
            first poll after ``subscribe``.
        polls: what successive polls return; every poll after them returns nothing.
        committed: each partition's committed offset and metadata (none: never committed).
        refuse_commits: how many offset commits fail first (``CommitFailedError``).
        events: the call log (shared with a :class:`RecordingProducer`): ``consumer.commit``,
            ``consumer.seek <partition> <offset>``, ``consumer.seek_to_beginning <partition>``.
        on_poll: called with the consumer after each poll (e.g. to move a fake clock).

    ``topics``, ``polls_asked`` (each poll's ``(timeout_ms, max_records)``) and
    ``commits`` (each accepted commit's offsets) record the rest.
    """

    def __init__(
        self,
        assigned: set[TopicPartition],
        polls: list[dict[Any, list[Message]]] | None = None,
        committed: dict[TopicPartition, tuple[int, str]] | None = None,
        refuse_commits: int = 0,
        events: list[str] | None = None,
        on_poll: Callable[[GroupConsumer], object] | None = None,
    ) -> None:
        self.assigned = set(assigned)
        self.script = list(polls or [])
        self.committed_at = dict(committed or {})
        self.refuse_commits = refuse_commits
        self.events = events if events is not None else []
        self.on_poll = on_poll
        self.topics: list[str] = []
        self.listener: Any = None
        self._to_assign = False
        self.polls_asked: list[tuple[int, int]] = []
        self.commits: list[dict[Any, Any]] = []
        self.paused_tps: set[TopicPartition] = set()

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.topics, self.listener, self._to_assign = list(topics), listener, True

    def poll(self, timeout_ms: int, max_records: int = 500) -> dict[Any, list[Message]]:
        self.polls_asked.append((timeout_ms, max_records))
        if self._to_assign:
            self._to_assign = False
            self.listener.on_partitions_assigned(set(self.assigned))
        got = self.script.pop(0) if self.script else {}
        if self.on_poll is not None:
            self.on_poll(self)
        return got

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def committed(self, tp: TopicPartition, metadata: bool = False) -> Any:
        if tp not in self.committed_at:
            return None
        offset, meta = self.committed_at[tp]
        return OffsetAndMetadata(offset, meta, -1) if metadata else offset

    def commit(self, offsets: dict[Any, Any]) -> None:
        from kafka.errors import CommitFailedError

        self.events.append("consumer.commit")
        if self.refuse_commits:
            self.refuse_commits -= 1
            raise CommitFailedError("the group rebalanced")
        self.commits.append(dict(offsets))
        for tp, meta in offsets.items():
            self.committed_at[tp] = (meta.offset, meta.metadata)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.events.append(f"consumer.seek {tp.partition} {offset}")

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.events.append(f"consumer.seek_to_beginning {tp.partition}")


class RecordingProducer:
    """A producer that logs its calls in order; transactional once ``init_transactions`` ran.

    Args:
        events: the call log (shared with a :class:`GroupConsumer`): ``producer.<method>``,
            a send as ``producer.send <topic>``.
        fail: why a send's delivery fails, by topic and value (None: delivered); failures
            are answered in the next ``flush``, as kafka-python answers a send.
        refuse_commits: what successive ``commit_transaction`` calls raise, in order
            (then they succeed).
        refuse_abort: what ``abort_transaction`` raises (None: it aborts).

    ``sent`` holds every send as ``(topic, key, value, other keyword arguments)``;
    ``offsets`` each ``send_offsets_to_transaction``'s ``(offsets, group metadata)``.
    """

    def __init__(
        self,
        events: list[str] | None = None,
        fail: Callable[[str, bytes | None], BaseException | None] = lambda topic, value: None,
        refuse_commits: list[BaseException] | None = None,
        refuse_abort: BaseException | None = None,
    ) -> None:
        self.events = events if events is not None else []
        self.fail = fail
        self.refuse_commits = list(refuse_commits or [])
        self.refuse_abort = refuse_abort
        self.transactional = False
        self.sent: list[tuple[str, bytes | None, bytes | None, dict[str, Any]]] = []
        self.offsets: list[tuple[Any, Any]] = []
        self._unanswered: list[tuple[FakeFuture, BaseException]] = []

    def init_transactions(self) -> None:
        self.events.append("producer.init_transactions")
        self.transactional = True

    def begin_transaction(self) -> None:
        self.events.append("producer.begin_transaction")

    def send(
        self, topic: str, key: bytes | None = None, value: bytes | None = None, **kw: Any
    ) -> FakeFuture:
        self.events.append(f"producer.send {topic}")
        self.sent.append((topic, key, value, kw))
        future = FakeFuture()
        exc = self.fail(topic, value)
        if exc is not None:
            self._unanswered.append((future, exc))
        return future

    def flush(self) -> None:
        self.events.append("producer.flush")
        unanswered, self._unanswered = self._unanswered, []
        for future, exc in unanswered:
            future.fail(exc)

    def send_offsets_to_transaction(self, offsets: Any, group: Any) -> None:
        self.events.append("producer.send_offsets_to_transaction")
        self.offsets.append((offsets, group))

    def commit_transaction(self) -> None:
        self.events.append("producer.commit_transaction")
        if self.refuse_commits:
            raise self.refuse_commits.pop(0)

    def abort_transaction(self) -> None:
        self.events.append("producer.abort_transaction")
        if self.refuse_abort is not None:
            raise self.refuse_abort
