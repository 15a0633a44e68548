"""The alerting stage against the real broker and InfluxDB: points, alerts, DLQ, tickets."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from alerting import store
from alerting.rules import Rules
from evaluation.replay import replay_tickets
from pipeline.deadletter import reason_of
from plantwatch.connections import kafka_config
from plantwatch.settings import Settings
from tests.alerting.helpers import (
    MIN,
    Running,
    alert_points,
    base_ms,
    model_version,
    produce,
    risk_points,
)

pytestmark = pytest.mark.integration
RULES = Rules(pending_steps=3, repeat_ms=0, deadman_ms=0)


def _dead(settings: Settings, topic: str, expect: int) -> list[tuple[str, str]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, **kafka_config(settings, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    )
    out = [reason_of(m.headers) for m in consumer][: expect + 1]
    consumer.close()
    return out


def test_predictions_to_points_alerts_tickets_and_dlq(
    live_services: Settings, make_topic: Callable[[str], str], unique: str, tmp_path: Path
) -> None:
    s = live_services
    topic = make_topic(f"pred-{unique}")
    make_topic(f"pred-{unique}.dlq")
    version = model_version(tmp_path / "models")
    a, b = f"pump-{unique}-a", f"fan-{unique}-b"
    series = {a: [0.1, 0.9, 0.9, 0.9, 0.95, 0.2, 0.2], b: [0.1] * 5}
    base = base_ms()
    bad = [b"{not json", produce_unknown(version)]
    n = produce(s, topic, series, version, base, extra=bad)
    db = tmp_path / "alert.sqlite"
    run = Running(s, topic, f"g-{unique}", db, version, RULES).start(idle_exit=4)
    run.join()
    m = run.service.metrics
    assert m.consumed == n + 2
    assert dict(m.dead) == {"bad_record": 1, "unknown_model_version": 1}

    pa, pb = risk_points(s, a), risk_points(s, b)
    assert [r["probability"] for r in pa] == series[a]
    assert [r["level"] for r in pa] == ["OK", "OK", "OK", "CRITICAL", "CRITICAL", "OK", "OK"]
    assert len(pb) == 5
    assert {r["model_version"] for r in pa} == {version}
    assert pa[0]["top_sensors"] == "temp:0.6,vib:0.3"

    alerts = alert_points(s, a)
    key = f"{a}:{base + 3 * MIN}"
    assert [(r["from_level"], r["to_level"], r["incident_key"]) for r in alerts] == [
        ("OK", "CRITICAL", key),
        ("CRITICAL", "OK", key),
    ]
    assert alert_points(s, b) == []

    conn = store.connect(db)
    (ticket,) = store.list_tickets(conn)
    assert ticket["incident_key"] == key
    assert ticket["incident_end_ms"] == base + 5 * MIN
    assert ticket["probability"] == 0.9
    assert "failure_risk" in ticket["flux"]
    # the offline replay (plantwatch evaluate, the plant bench) opens the same ticket
    times = {eid: [base + i * MIN for i in range(len(p))] for eid, p in series.items()}
    replayed = replay_tickets([(e, times[e], series[e]) for e in series], RULES)
    assert replayed == [(a, ticket["opened_ms"])]

    reasons = _dead(s, f"{topic}.dlq", 2)
    assert sorted(r for r, _ in reasons) == ["bad_record", "unknown_model_version"]
    assert any("not JSON" in d for _, d in reasons)

    # A replay by another group over the same store: same points, no second ticket.
    again = Running(s, topic, f"g2-{unique}", db, version, RULES).start(idle_exit=4)
    again.join()
    assert len(store.list_tickets(conn)) == 1
    assert [r["level"] for r in risk_points(s, a)] == [r["level"] for r in pa]
    assert len(alert_points(s, a)) == 2


def produce_unknown(version: str) -> bytes:
    from pipeline.predictions import Prediction, encode_prediction

    return encode_prediction(Prediction("x-1", 1, 0.5, 0.5, version + "-other", 1, 1, 1))


def test_influxdb_stopped_mid_stream(
    live_services: Settings,
    make_topic: Callable[[str], str],
    unique: str,
    tmp_path: Path,
    caught_up: Callable[..., None],
) -> None:
    from devservices.influxdb import InfluxService

    s = live_services
    topic = make_topic(f"pred-{unique}")
    make_topic(f"pred-{unique}.dlq")
    version = model_version(tmp_path / "models")
    machines = [f"m-{unique}-{i}" for i in range(4)]
    base = base_ms() - 60 * MIN
    first = produce(s, topic, {m: [0.2] * 40 for m in machines}, version, base)
    group = f"g-{unique}"
    run = Running(s, topic, group, tmp_path / "a.sqlite", version, RULES).start()
    influx = InfluxService.from_settings(s)
    try:
        caught_up(s, group, topic, timeout=60)
        influx.down()
        second = produce(s, topic, {m: [0.3] * 40 for m in machines}, version, base, start=40)
        time.sleep(4)  # the service retries against the stopped server
        assert run.service.metrics.retries >= 1
    finally:
        influx.up(lambda _line: None)
    caught_up(s, group, topic, timeout=60)
    run.join()
    assert run.service.metrics.consumed == first + second
    for m in machines:
        points = risk_points(s, m)
        times = [r["_time"] for r in points]
        assert len(points) == 80
        assert len(set(times)) == 80
        assert [r["probability"] for r in points] == [0.2] * 40 + [0.3] * 40
