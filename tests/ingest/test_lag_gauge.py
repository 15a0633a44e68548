"""The ingest lag gauge follows the position on empty polls too (pure logic, fake Kafka).

A read_committed consumer skips an aborted transaction's records without returning any:
the poll that moves past them is empty. The gauge must drop to 0 then, not keep the
records-behind count of the last batch (the real-broker side of the lag rule is in
``tests/plantwatch/test_kafka_integration.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from kafka import TopicPartition

from ingest.contract import Telemetry, encode
from ingest.service import IngestConfig, IngestService
from tests.fake_kafka import FakeConsumer, FakeFuture

NOW_MS = 1_795_000_000_000
TP = TopicPartition("telemetry", 0)


class _Producer:
    def init_transactions(self) -> None:
        pass

    def begin_transaction(self) -> None:
        pass

    def send(self, topic: str, key: Any = None, value: Any = None, **_: Any) -> FakeFuture:
        return FakeFuture()

    def flush(self) -> None:
        pass

    def send_offsets_to_transaction(self, offsets: Any, group: Any) -> None:
        pass

    def commit_transaction(self) -> None:
        pass


class _Sink:
    def write(self, records: Sequence[Telemetry]) -> None:
        pass

    def flush(self) -> None:
        pass


def _run(
    aborted_tail: int = 0, max_messages: int | None = None
) -> tuple[IngestService, FakeConsumer]:
    values = [encode(Telemetry("m", NOW_MS - 60_000 + i * 1000, {"t": 1.0})) for i in range(5)]
    stop = threading.Event()
    consumer = FakeConsumer(
        TP,
        values,
        chunk=2,
        timestamp=NOW_MS,
        aborted_tail=aborted_tail,
        on_poll=lambda c: c.empty_polls >= 2 and stop.set(),
    )
    service = IngestService(
        consumer,
        _Producer(),
        [_Sink()],
        IngestConfig(transactional=True, poll_timeout_ms=0),
        clock=lambda: NOW_MS / 1000,
    )
    service.run(stop, max_messages=max_messages)
    return service, consumer


def test_the_lag_gauge_drops_to_zero_when_an_empty_poll_skips_aborted_records() -> None:
    service, consumer = _run(aborted_tail=3)
    assert consumer.offset == 5 + 3  # the empty poll moved past the aborted records
    assert service.metrics.consumed == 5
    assert service.metrics.lag == 0  # before the fix: 3, the count after the last batch


def test_the_lag_gauge_counts_the_records_left_after_a_batch() -> None:
    service, _ = _run(max_messages=2)  # one batch of 2 read, 3 left
    assert service.metrics.lag == 3
