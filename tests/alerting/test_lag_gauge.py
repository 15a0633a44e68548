"""The alerting stage's lag gauge follows its consumer (pure logic, fake Kafka).

The loop's batch work (InfluxDB, store, tickets) is replaced by a no-op here: what is
checked is that every poll, empty ones included, sets ``plantwatch_alerting_lag`` to the
records left to read, and that so does every retry while an InfluxDB outage pauses the stage (the lag rule itself is tested against a real broker in
``tests/plantwatch/test_kafka_integration.py``).
"""

from __future__ import annotations

import threading

import pytest
from kafka import TopicPartition
from prometheus_client import generate_latest

from alerting.errors import TransientWriteError
from alerting.service import AlertConfig, AlertingService
from tests.fake_kafka import FakeConsumer, Message

TP = TopicPartition("predictions", 0)


def _run(polls: int, aborted_tail: int = 0) -> AlertingService:
    stop = threading.Event()
    consumer = FakeConsumer(
        TP,
        [b"p"] * 6,
        chunk=2,
        aborted_tail=aborted_tail,
        on_poll=lambda c: c.polls == polls and stop.set(),
    )
    service = AlertingService(
        consumer,
        None,
        None,  # writer, store, rules: never reached (process is replaced)
        None,
        None,
        AlertConfig(poll_timeout_ms=0, deadman_every_s=3600),
        lambda: None,
        lambda v: True,
    )
    service.process = lambda polled: len(polled)
    service.run(stop)
    return service


@pytest.mark.parametrize(("polls", "lag"), [(1, 4), (2, 2), (3, 0)])
def test_the_lag_gauge_counts_the_records_left_after_each_poll(polls: int, lag: int) -> None:
    service = _run(polls)
    assert service.metrics.lag == lag
    text = generate_latest(service.metrics.registry).decode()
    assert f"plantwatch_alerting_lag {float(lag)}" in text


def test_an_empty_poll_past_aborted_records_brings_the_lag_to_zero() -> None:
    service = _run(polls=4, aborted_tail=2)  # 3 polls read the 6 records, the 4th skips 2
    assert service.metrics.lag == 0


class _DownInflux:
    """Refuses ``fails`` writes; each refusal, 5 more predictions arrive on the topic."""

    def __init__(self, consumer: FakeConsumer, fails: int) -> None:
        self.consumer, self.fails = consumer, fails
        self.lag_seen: list[int] = []
        self.service: AlertingService | None = None

    def write(self, lines: list[str]) -> None:
        assert self.service is not None
        self.lag_seen.append(self.service.metrics.lag)
        if len(self.lag_seen) > self.fails:
            return
        n = len(self.consumer.log)
        self.consumer.log += [Message(n + i, b"m", b"p", 0) for i in range(5)]
        raise TransientWriteError("InfluxDB is down")


def test_the_lag_gauge_counts_what_arrives_while_an_influx_outage_pauses_the_stage() -> None:
    stop = threading.Event()
    consumer = FakeConsumer(TP, [b"p"] * 6, on_poll=lambda c: c.polls == 1 and stop.set())
    writer = _DownInflux(consumer, fails=2)
    service = AlertingService(
        consumer,
        None,
        writer,
        None,
        None,
        AlertConfig(poll_timeout_ms=0, deadman_every_s=3600),
        lambda: None,
        lambda v: True,
    )
    writer.service = service
    service.process = lambda polled: service._write(["risk"])  # type: ignore[method-assign]
    service.run(stop)
    # after the first poll nothing was left; each retry sees what arrived while paused
    assert writer.lag_seen == [0, 5, 10]
    assert consumer.paused() == set()  # resumed once the write went through
