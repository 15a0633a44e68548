"""Shared pieces of the ingest integration tests: an observable sink, an in-process stage."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from ingest.contract import Limits, Telemetry
from ingest.service import IngestConfig, IngestService
from plantwatch.connections import kafka_config
from plantwatch.settings import Settings


class ListSink:
    """The observable handler: keeps what the service handed on, per flush."""

    def __init__(self) -> None:
        self.pending: list[Telemetry] = []
        self.flushed: list[Telemetry] = []

    def write(self, records: Sequence[Telemetry]) -> None:
        self.pending.extend(records)

    def flush(self) -> None:
        self.flushed.extend(self.pending)
        self.pending.clear()


def run_ingest_service(
    settings: Settings,
    topic: str,
    group: str,
    count: int,
    limits: Limits,
    lateness_ms: int = 60_000,
) -> tuple[IngestService, ListSink]:
    """The ingest stage in-process (DLQ ``<topic>.dlq``) until it has read ``count`` more
    records of ``topic`` (committed ones), with a :class:`ListSink`."""
    from kafka import KafkaConsumer, KafkaProducer

    sink = ListSink()
    consumer = KafkaConsumer(
        **kafka_config(
            settings,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
    )
    producer = KafkaProducer(**kafka_config(settings, acks="all"))
    config = IngestConfig(
        topic=topic, dlq_topic=f"{topic}.dlq", lateness_ms=lateness_ms, limits=limits
    )
    service = IngestService(consumer, producer, [sink], config)
    try:
        service.run(threading.Event(), max_messages=count, idle_exit_s=30)
    finally:
        consumer.close()
        producer.close()
    return service, sink


def read_topic(settings: Settings, topic: str, expect: int, timeout: float = 30) -> list[Any]:
    """Up to ``expect`` committed records of ``topic`` from its start (waits ``timeout``)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        **kafka_config(
            settings,
            auto_offset_reset="earliest",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        ),
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # anything beyond what was expected would be a doubled letter: look a little longer
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


def influx_rows(settings: Settings, equipment_id: str) -> list[tuple[int, str, float]]:
    """Every (time ms, sensor, value) of one machine in the measurement ``telemetry``."""
    from plantwatch.connections import influx_client

    flux = (
        f'from(bucket: "{settings.influx_bucket}") |> range(start: 0) '
        f'|> filter(fn: (r) => r._measurement == "telemetry" and r.equipment_id == "{equipment_id}")'
    )
    with influx_client(settings) as client:
        tables = client.query_api().query(flux)
    return [
        (int(rec.get_time().timestamp() * 1000), rec.get_field(), rec.get_value())
        for table in tables
        for rec in table.records
    ]


def ingest_env(topic: str, group: str) -> dict[str, str]:
    """The environment of a `plantwatch ingest` of its own: ``topic``, its DLQ and features."""
    import os

    return dict(
        os.environ,
        PLANTWATCH_TOPIC_TELEMETRY=topic,
        PLANTWATCH_TOPIC_TELEMETRY_DLQ=f"{topic}.dlq",
        PLANTWATCH_TOPIC_FEATURES=f"{topic}.features",
        PLANTWATCH_INGEST_GROUP=group,
    )
