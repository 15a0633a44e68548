"""A fake kafka-python consumer for the pure-logic tests of the stage loops.

One partition, a log of messages handed out in polls of at most ``chunk`` records; the
group assigns the partition on the first poll. Most tests keep their own producer fake
(what a commit does is what they check); :class:`TransactionalProducer` is the one that
hands its commits back to the consumer, for tests that restart a stage.
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


class FakeConsumer:
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

    def group_metadata(self) -> str:
        return "group"

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps |= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps -= set(tps)

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> Any:
        """The broker's end: records appended to ``log`` after the last poll included."""
        return {tp: len(self.log) + self.aborted_tail for tp in tps}


class FakeFuture:
    """A send's future: errbacks are never called (the fake producers do not fail sends)."""

    def add_errback(self, fn: Any) -> FakeFuture:
        return self


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
