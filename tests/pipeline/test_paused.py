"""Waiting out an output outage with the input paused (``pipeline.paused``), fake Kafka."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from pipeline.paused import broker_lag, pause_for, retry_paused
from tests.fake_kafka import FakeConsumer, Message

TP = TopicPartition("telemetry", 0)


class Down(Exception):
    """The outage."""


def _arrive(consumer: FakeConsumer, n: int) -> None:
    start = len(consumer.log)
    consumer.log += [Message(start + i, b"m", b"v", 0) for i in range(n)]


def test_retries_paused_and_the_lag_follows_the_backlog(caplog: pytest.LogCaptureFixture) -> None:
    consumer = FakeConsumer(TP, [b"v"] * 4)
    consumer.poll(timeout_ms=0)  # read all 4: nothing left
    lags: list[int] = []
    retries: list[int] = []
    attempts: list[set[TopicPartition]] = []

    def write() -> None:
        attempts.append(consumer.paused())
        if len(attempts) <= 2:
            _arrive(consumer, 3)
            raise Down("InfluxDB is down")

    with caplog.at_level(logging.INFO):
        retry_paused(
            consumer, write, Down, 1.0, logging.getLogger("plantwatch.ingest"), "ingest",
            "sinks are back", lags.append, lambda: retries.append(1),
        )  # fmt: skip
    assert attempts == [set(), {TP}, {TP}]  # paused from the first failure on
    assert lags == [3, 6]
    assert len(retries) == 2
    assert consumer.paused() == set()
    assert consumer.offset == 4  # polls while paused fetched nothing
    assert "ingest: InfluxDB is down; paused, retrying in 0.5s" in caplog.text
    assert "ingest: sinks are back; resumed" in caplog.text


def test_an_unanswered_end_offsets_request_gives_no_lag() -> None:
    class Away(FakeConsumer):
        def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> Any:
            raise KafkaTimeoutError("no answer")

    consumer = Away(TP, [b"v"] * 2)
    assert broker_lag(consumer) is None
    assert broker_lag(FakeConsumer(TP, [b"v"] * 2)) == 2  # nothing read yet


class Refused(Exception):
    """The output refused the records themselves."""


def test_an_error_other_than_the_outage_propagates_with_the_input_resumed() -> None:
    consumer = FakeConsumer(TP, [b"v"] * 2)
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        raise Down("HTTP 503") if len(calls) == 1 else Refused("HTTP 422")

    with pytest.raises(Refused):
        retry_paused(
            consumer, write, Down, 1.0, logging.getLogger("t"), "t", "back", lambda n: None
        )
    assert consumer.paused() == set()  # a paused input would never read another record


class Rebalanced(FakeConsumer):
    """The first poll while paused joins a rebalance that assigns ``NEW``, unpaused, and
    fetches its records in the same call (as kafka-python's poll may)."""

    NEW = TopicPartition("telemetry", 1)

    def __init__(self) -> None:
        super().__init__(TP, [b"v"] * 2)
        self.new_assigned = False
        self.sought: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return {TP, self.NEW} if self.new_assigned else {TP}

    def poll(self, timeout_ms: int, max_records: int = 500) -> dict[Any, list[Message]]:
        if self.paused_tps and not self.new_assigned:
            self.new_assigned = True
            return {self.NEW: [Message(5, b"m", b"v", 0), Message(6, b"m", b"v", 0)]}
        return super().poll(timeout_ms, max_records)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset


def test_records_fetched_while_paused_are_sought_back_not_skipped() -> None:
    consumer = Rebalanced()
    pause_for(consumer, 0.3)
    assert consumer.sought == {Rebalanced.NEW: 5}  # read again after the wait
    assert consumer.paused() == set()


def test_pause_for_resumes_only_what_is_still_assigned() -> None:
    class Revoked(FakeConsumer):
        """The first poll's rebalance takes the partition away (and its paused state)."""

        revoked = False

        def assignment(self) -> set[TopicPartition]:
            return set() if self.revoked else {TP}

        def poll(self, timeout_ms: int, max_records: int = 500) -> dict[Any, list[Message]]:
            self.revoked = True
            self.paused_tps.clear()
            return {}

        def resume(self, *tps: TopicPartition) -> None:
            assert set(tps) <= self.assignment(), "resumed a partition no longer assigned"
            super().resume(*tps)

    consumer = Revoked(TP, [])
    pause_for(consumer, 0.3)
    assert consumer.revoked
