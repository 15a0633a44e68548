"""A real round trip through Kafka and InfluxDB, used by `plantwatch smoke`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from pipeline.errors import ConnectionCheckError
from plantwatch.connections import (
    influx_client,
    influx_errors,
    kafka_config,
    kafka_errors,
    producer_config,
)
from plantwatch.settings import Settings


def kafka_round_trip(settings: Settings, equipment_id: str, timeout_s: float = 30) -> str:
    """Produce one telemetry record keyed by ``equipment_id`` and read that exact record back."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = settings.topic_telemetry
    now_ms = int(time.time() * 1000)
    record = {
        "equipment_id": equipment_id,
        "ts": now_ms,
        "readings": {"temperature": 21.5, "vibration_rms": 0.12},
        "site": "smoke-test",
    }
    value = json.dumps(record, separators=(",", ":")).encode()
    started = time.monotonic()
    with kafka_errors(settings):
        producer = KafkaProducer(**producer_config(settings, acks="all", linger_ms=0))
        try:
            meta = producer.send(topic, key=equipment_id.encode(), value=value).get(
                timeout=timeout_s
            )
            producer.flush(timeout=timeout_s)
        finally:
            producer.close(timeout=5)
        consumer = KafkaConsumer(**kafka_config(settings, enable_auto_commit=False))
        try:
            tp = TopicPartition(topic, meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for msg in consumer.poll(timeout_ms=500).get(tp, []):
                    if msg.offset == meta.offset:
                        if msg.value != value or msg.key != equipment_id.encode():
                            raise ConnectionCheckError(
                                f"Kafka returned a different record at {topic}[{tp.partition}]"
                                f"@{meta.offset}"
                            )
                        ms = (time.monotonic() - started) * 1000
                        return (
                            f"kafka     ok  produced and read back {equipment_id} at "
                            f"{topic}[{meta.partition}]@{meta.offset} in {ms:.0f} ms"
                        )
        finally:
            consumer.close()
    raise ConnectionCheckError(
        f"Kafka accepted the record at {topic}[{meta.partition}]@{meta.offset} "
        f"but it could not be read back within {timeout_s:.0f}s"
    )


def influx_round_trip(settings: Settings, equipment_id: str) -> str:
    """Write one `telemetry` point and read it back with a Flux query."""
    from influxdb_client import Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    now_ms = int(time.time() * 1000)
    point = (
        Point("telemetry")
        .tag("equipment_id", equipment_id)
        .tag("site", "smoke-test")
        .field("temperature", 21.5)
        .time(now_ms, WritePrecision.MS)
    )
    flux = (
        f'from(bucket: "{settings.influx_bucket}") |> range(start: -1h) '
        f'|> filter(fn: (r) => r._measurement == "telemetry" and '
        f'r.equipment_id == "{equipment_id}" and r._field == "temperature")'
    )
    started = time.monotonic()
    with influx_errors(settings), influx_client(settings) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=settings.influx_bucket, record=point
        )
        tables = client.query_api().query(flux)
    values = [rec.get_value() for table in tables for rec in table.records]
    if values != [21.5]:
        raise ConnectionCheckError(
            f"InfluxDB accepted the point but the Flux query returned {values!r} "
            f"instead of [21.5] (bucket {settings.influx_bucket!r})"
        )
    ms = (time.monotonic() - started) * 1000
    return (
        f"influxdb  ok  wrote and queried back telemetry,equipment_id={equipment_id} "
        f"in bucket {settings.influx_bucket!r} in {ms:.0f} ms"
    )


def run_smoke(settings: Settings, equipment_id: str) -> Iterator[str]:
    """Both round trips, one result line each."""
    yield kafka_round_trip(settings, equipment_id)
    yield influx_round_trip(settings, equipment_id)
