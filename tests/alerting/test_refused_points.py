"""Points that InfluxDB refuses never stop the alerting stage (pure logic, fake Kafka).

A record whose points InfluxDB refuses (HTTP 400/413/422: a field type conflict, a line
it cannot parse) becomes a dead letter ``sink_refused`` with InfluxDB's words; the other
records of the batch are written, the state machine keeps what the record did, and the
batch commits. An outage (5xx, timeouts) is still waited out and retried, never taken for
a refusal; a refused configuration (token, bucket) still stops the stage. The real-server
side is ``tests/alerting/test_refused_points_integration.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from alerting import store
from alerting.errors import (
    DeliveryError,
    FatalWriteError,
    RefusedWriteError,
    TransientWriteError,
)
from alerting.rules import Rules, Silences
from alerting.service import AlertConfig, AlertingService
from alerting.sinks import influx_sender
from alerting.store import OutboxRow
from pipeline.deadletter import headers_of
from pipeline.predictions import Prediction, encode_prediction
from tests.fake_kafka import FakeConsumer, FakeFuture

TP = TopicPartition("predictions", 0)
BASE = 1_795_000_000_000
MIN = 60_000
RULES = Rules(pending_steps=1, repeat_ms=0, deadman_ms=0)


def _prediction(eid: str, i: int, probability: float = 0.2) -> bytes:
    return encode_prediction(
        Prediction(eid, BASE + i * MIN, probability, 0.5, "v1", 30, 1_800_000, 50)
    )


class _Influx:
    """Takes a write unless a line holds one of ``refuse``; ``down`` writes fail first."""

    def __init__(self, refuse: tuple[str, ...] = (), down: int = 0) -> None:
        self.refuse, self.down = refuse, down
        self.written: list[str] = []
        self.calls = 0

    def write(self, lines: list[str]) -> None:
        self.calls += 1
        if self.down:
            self.down -= 1
            raise TransientWriteError("InfluxDB answered HTTP 503")
        bad = [line for line in lines if any(r in line for r in self.refuse)]
        if bad:
            raise RefusedWriteError(
                "InfluxDB refused the points (HTTP 422)",
                'HTTP 422: partial write: field type conflict: input field "probability" '
                'on measurement "failure_risk" is type float, already exists as type string',
            )
        self.written.extend(lines)


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any, Any]] = []

    def send(self, topic: str, key: Any = None, value: Any = None, headers: Any = None) -> Any:
        self.sent.append((topic, key, value, headers))
        return FakeFuture()

    def flush(self) -> None:
        pass


def _service(
    consumer: FakeConsumer, influx: _Influx, producer: _Producer, tmp_path: Path, wall: float = 0
) -> AlertingService:
    return AlertingService(
        consumer,
        producer,
        influx,  # type: ignore[arg-type]
        store.connect(tmp_path / "alerting.db"),
        RULES,
        AlertConfig(topic=TP.topic, dlq_topic="predictions.dlq", backoff_max_s=0.5),
        Silences,
        lambda version: version == "v1",
        wall=lambda: wall,
    )


def test_a_record_whose_points_influx_refuses_is_a_dead_letter_and_the_batch_commits(
    tmp_path: Path,
) -> None:
    values = [_prediction(f"m-{i}", 0) for i in range(6)]
    values[3] = _prediction("m-refused", 0, probability=0.9)  # CRITICAL: an alert point too
    consumer = FakeConsumer(TP, values)
    influx, producer = _Influx(refuse=("m-refused",)), _Producer()
    service = _service(consumer, influx, producer, tmp_path)

    assert service.process(consumer.poll(timeout_ms=0)) == {TP: 6}

    assert consumer.committed_offset == 6
    assert store.stored_offsets(service._conn, service.config.group, TP.topic) == {0: 6}
    machines = {line.split("equipment_id=")[1].split(",")[0] for line in influx.written}
    assert machines == {f"m-{i}" for i in (0, 1, 2, 4, 5)}
    ((topic, key, value, headers),) = producer.sent
    assert (topic, key, value) == ("predictions.dlq", b"m", values[3])
    h = headers_of(headers)
    assert (h["reason"], h["stage"], h["source.offset"]) == ("sink_refused", "alerting", "3")
    assert "InfluxDB refused 2 of the record's 2 point(s) (alerts, failure_risk)" in h["detail"]
    assert "field type conflict" in h["detail"]
    assert dict(service.metrics.dead) == {"sink_refused": 1}
    assert service.metrics.points == 5
    # The state machine keeps what the refused record did (docs/alerting.md).
    state = store.load_state(service._conn, "m-refused")
    assert state is not None
    assert state.level == "CRITICAL"


def test_the_points_influx_takes_of_a_refused_record_are_written(tmp_path: Path) -> None:
    """Only the ``alerts`` point is refused: the ``failure_risk`` point still goes in."""
    consumer = FakeConsumer(TP, [_prediction("m-a", 0, 0.9), _prediction("m-b", 0)])
    influx, producer = _Influx(refuse=("alerts,equipment_id=m-a",)), _Producer()
    service = _service(consumer, influx, producer, tmp_path)
    service.process(consumer.poll(timeout_ms=0))
    assert sorted(line.split(" ")[0] for line in influx.written) == [
        "failure_risk,equipment_id=m-a,model_version=v1",
        "failure_risk,equipment_id=m-b,model_version=v1",
    ]
    ((_topic, _key, _value, headers),) = producer.sent
    assert "refused 1 of the record's 2 point(s) (alerts)" in headers_of(headers)["detail"]
    assert consumer.committed_offset == 2


def test_an_outage_then_a_refusal_is_retried_then_dead_lettered_and_the_input_resumes(
    tmp_path: Path,
) -> None:
    values = [_prediction("m-a", 0), _prediction("m-bad", 0), _prediction("m-c", 0)]
    consumer = FakeConsumer(TP, values)
    influx, producer = _Influx(refuse=("m-bad",), down=2), _Producer()
    service = _service(consumer, influx, producer, tmp_path)
    service.process(consumer.poll(timeout_ms=0))
    assert service.metrics.retries == 2  # the 503s were waited out, not dead-lettered
    assert consumer.paused() == set()  # and the refusal after them left the input running
    assert [headers_of(h)["reason"] for _t, _k, _v, h in producer.sent] == ["sink_refused"]
    assert len(influx.written) == 2
    assert consumer.committed_offset == 3


def test_a_refused_configuration_still_stops_the_stage(tmp_path: Path) -> None:
    class _NoBucket(_Influx):
        def write(self, lines: list[str]) -> None:
            raise FatalWriteError("InfluxDB bucket 'x' or org 'y' not found (HTTP 404)")

    consumer = FakeConsumer(TP, [_prediction("m-a", 0)])
    service = _service(consumer, _NoBucket(), _Producer(), tmp_path)
    with pytest.raises(FatalWriteError):
        service.process(consumer.poll(timeout_ms=0))
    assert consumer.committed_offset is None


def test_a_refused_deadman_point_is_logged_and_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = FakeConsumer(TP, [_prediction("m-a", 0), _prediction("m-b", 0)])
    influx, producer = _Influx(refuse=("alerts,equipment_id=m-a",)), _Producer()
    service = _service(consumer, influx, producer, tmp_path, wall=BASE / 1000)
    service.rules = Rules(pending_steps=1, repeat_ms=0, deadman_ms=60_000)
    service.process(consumer.poll(timeout_ms=0))
    service._wall = lambda: BASE / 1000 + 3600
    with caplog.at_level(logging.WARNING):
        assert service.check_deadman() == 2
    assert "InfluxDB refused a deadman point, dropped" in caplog.text
    nodata = [line for line in influx.written if line.startswith("alerts,")]
    assert [line.split(",")[1] for line in nodata] == ["equipment_id=m-b"]
    assert producer.sent == []
    for eid in ("m-a", "m-b"):
        state = store.load_state(service._conn, eid)
        assert state is not None
        assert state.nodata


def test_the_influx_outbox_sink_gives_up_on_a_refused_ticket_point() -> None:
    row = OutboxRow(1, "influx", "k:open", "k", b"tickets,equipment_id=m status=1", 0)

    def sender(exc: Exception) -> DeliveryError:
        class _W:
            def write(self, lines: list[str]) -> None:
                raise exc

        with pytest.raises(DeliveryError) as caught:
            influx_sender(_W())(row)  # type: ignore[arg-type]
        return caught.value

    assert not sender(RefusedWriteError("refused", "HTTP 400: bad")).retryable
    assert not sender(FatalWriteError("token")).retryable
    assert sender(TransientWriteError("HTTP 503")).retryable
