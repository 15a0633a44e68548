"""Shared pieces of the ingest integration tests: an observable sink, an in-process stage."""

from __future__ import annotations

import threading
from collections.abc import Sequence

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
