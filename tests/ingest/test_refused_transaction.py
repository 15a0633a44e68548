"""A batch whose Kafka transaction (or, without transactions, whose offset commit) is refused
is rebuilt in-process (pure logic, fake Kafka).

The real-broker side (a broker stopped mid-commit) is part of ``tests/test_faults.py``; here a
fake consumer and transactional producer make the refusal deterministic, and the check is
that nothing is lost or doubled: the service does not exit, the offsets go back to the last
commit, the order guard forgets the uncommitted batch (its records are not "duplicates" when
they come again), and the dead letter is published once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka import TopicPartition
from kafka.errors import CommitFailedError

from ingest.contract import Telemetry, encode
from ingest.service import IngestConfig, IngestService
from tests.fake_kafka import FakeConsumer, FakeFuture

NOW_MS = 1_795_000_000_000
TP = TopicPartition("telemetry", 0)


def _consumer(values: list[bytes]) -> FakeConsumer:
    return FakeConsumer(TP, values, chunk=3, timestamp=NOW_MS)  # three records per poll


class _Producer:
    """Transactional: sends become visible only when their transaction commits."""

    def __init__(self, consumer: FakeConsumer, refuse: int) -> None:
        self.consumer, self.refuse = consumer, refuse  # refuse the N-th commit
        self.pending: list[tuple[str, bytes | None]] = []
        self.offsets: Any = None
        self.visible: list[tuple[str, bytes | None]] = []
        self.commits = 0
        self.aborts = 0

    def init_transactions(self) -> None:
        pass

    def begin_transaction(self) -> None:
        self.pending, self.offsets = [], None

    def send(self, topic: str, key: Any = None, value: Any = None, **_: Any) -> FakeFuture:
        self.pending.append((topic, value))
        return FakeFuture()

    def flush(self) -> None:
        pass

    def send_offsets_to_transaction(self, offsets: Any, group: Any) -> None:
        self.offsets = offsets

    def commit_transaction(self) -> None:
        self.commits += 1
        if self.commits == self.refuse:
            raise CommitFailedError("the broker went away")
        self.visible += self.pending
        self.consumer.committed_offset = self.offsets[TP].offset

    def abort_transaction(self) -> None:
        self.aborts += 1
        self.pending = []


class _Sink:
    def __init__(self) -> None:
        self.written: list[Telemetry] = []

    def write(self, records: Sequence[Telemetry]) -> None:
        self.written += records

    def flush(self) -> None:
        pass


def _drive(service: IngestService, consumer: FakeConsumer) -> None:
    service.runtime.subscribe()
    for _ in range(8):  # assignment rewind, refused batch, rebuild rewind, replay, ...
        polled = consumer.poll(timeout_ms=0, max_records=3)
        service.runtime.rewind(polled)
        if polled:
            service.process(polled)


def test_a_refused_transaction_rebuilds_instead_of_exiting() -> None:
    values = [
        encode(Telemetry("m", NOW_MS - 60_000 + i * 1000, {"temp": float(i)})) for i in range(4)
    ]
    values.insert(2, b"not json")  # offset 2: a dead letter in the refused batch
    consumer = _consumer([*values, encode(Telemetry("m", NOW_MS - 10_000, {"temp": 9.0}))])
    producer = _Producer(consumer, refuse=1)  # the first batch (offsets 0..2) is refused
    sink = _Sink()
    service = IngestService(
        consumer,
        producer,
        [sink],
        IngestConfig(transactional=True),
        clock=lambda: NOW_MS / 1000,
    )
    _drive(service, consumer)

    assert producer.aborts == 1
    assert consumer.committed_offset == len(consumer.log)  # everything, after the replay
    dead = [v for topic, v in producer.visible if topic == "telemetry.dlq"]
    assert dead == [b"not json"]  # published once: the refused transaction's copy was aborted
    assert service.metrics.duplicates == 0  # the replayed records are not taken for repeats
    assert service.metrics.consumed == len(consumer.log)  # the refused batch is not counted
    expected = {NOW_MS - 60_000 + i * 1000 for i in range(4)} | {NOW_MS - 10_000}
    assert {r.ts_ms for r in sink.written} == expected  # every valid sample reached the sink
    assert len(sink.written) == 5  # once each: the replay of the refused batch skips the sinks


class _RefusingConsumer(FakeConsumer):
    """Refuses its first offset commit, as after a rebalance the member missed."""

    refused = 0

    def commit(self, offsets: Any) -> None:
        if not self.refused:
            self.refused += 1
            raise CommitFailedError("the group rebalanced")
        super().commit(offsets)


class _PlainProducer:
    """Without transactions: a send is published at once."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes | None]] = []

    def send(self, topic: str, key: Any = None, value: Any = None, **_: Any) -> FakeFuture:
        self.published.append((topic, value))
        return FakeFuture()

    def flush(self) -> None:
        pass


def test_a_refused_offset_commit_without_transactions_rebuilds_instead_of_exiting() -> None:
    values = [
        encode(Telemetry("m", NOW_MS - 60_000 + i * 1000, {"temp": float(i)})) for i in range(4)
    ]
    values.insert(2, b"not json")
    consumer = _RefusingConsumer(TP, values, chunk=3, timestamp=NOW_MS)
    producer = _PlainProducer()
    sink = _Sink()
    service = IngestService(consumer, producer, [sink], IngestConfig(), clock=lambda: NOW_MS / 1000)
    _drive(service, consumer)

    assert consumer.refused == 1
    assert consumer.committed_offset == len(consumer.log)  # everything, after the replay
    dead = [v for topic, v in producer.published if topic == "telemetry.dlq"]
    assert dead == [b"not json", b"not json"]  # at least once: published again on replay
    assert service.metrics.duplicates == 0  # the replayed records are not taken for repeats
    assert service.metrics.consumed == len(consumer.log)  # the refused batch is not counted
    assert {r.ts_ms for r in sink.written} == {NOW_MS - 60_000 + i * 1000 for i in range(4)}


class _RefusingSink(_Sink):
    """Refuses a write that holds a sample of machine ``bad`` (InfluxDB's HTTP 400)."""

    def __init__(self, bad: str) -> None:
        super().__init__()
        self.bad = bad
        self.pending: list[Telemetry] = []
        self.attempts = 0

    def write(self, records: Sequence[Telemetry]) -> None:
        self.pending += records

    def flush(self) -> None:
        from pipeline.errors import RefusedOutputError

        self.attempts += 1
        pending, self.pending = self.pending, []
        if any(r.equipment_id == self.bad for r in pending):
            raise RefusedOutputError("refused", "HTTP 400: unable to parse")
        self.written += pending


def test_records_a_sink_refuses_become_dead_letters_and_later_sinks_skip_them() -> None:
    values = [
        encode(Telemetry("bad" if i in (2, 7) else "m", NOW_MS - 60_000 + i * 1000, {"t": 1.0}))
        for i in range(9)
    ]
    consumer = FakeConsumer(TP, values, chunk=9, timestamp=NOW_MS)
    producer = _Producer(consumer, refuse=0)
    refusing, tap = _RefusingSink("bad"), _Sink()
    service = IngestService(
        consumer, producer, [refusing, tap], IngestConfig(transactional=True, dlq_topic="dlq")
    )
    _drive(service, consumer)
    assert consumer.committed_offset == 9
    assert [v for topic, v in producer.visible if topic == "dlq"] == [values[2], values[7]]
    assert [r.equipment_id for r in refusing.written] == ["m"] * 7
    assert [r.equipment_id for r in tap.written] == ["m"] * 7  # the tap gets what was taken
    assert service.metrics.dead == {"sink_refused": 2}
    assert service.metrics.valid == 7
    assert refusing.attempts <= 1 + 2 * 4 * 2  # bisection, not one write per record
