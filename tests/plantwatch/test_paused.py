"""Waiting out an output outage with the input paused (``plantwatch.paused``), fake Kafka."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from plantwatch.paused import broker_lag, retry_paused
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
