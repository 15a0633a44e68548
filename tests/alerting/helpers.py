"""Shared pieces of the alerting integration tests: predictions in, Flux out, a service."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from alerting import store
from alerting.influx import InfluxWriter
from alerting.rules import Rules, Silences
from alerting.service import AlertConfig, AlertingService
from models.registry import versions_in
from pipeline.predictions import Prediction, encode_prediction
from plantwatch.connections import influx_client, kafka_config, stage_consumer_config
from plantwatch.settings import Settings

MIN = 60_000


def model_version(root: Path) -> str:
    """Register a unique model artifact (any bytes) and return its version."""
    d = root / "model-a"
    d.mkdir(parents=True)
    (d / "spec.json").write_text(f'{{"test": "{root.name}"}}')
    (d / "model.keras").write_bytes(str(root).encode())
    (version,) = versions_in(root)
    return version


def base_ms() -> int:
    """A minute-aligned prediction time an hour ago."""
    return (int(time.time() * 1000) - 3_600_000) // MIN * MIN


def produce(
    settings: Settings,
    topic: str,
    series: dict[str, list[float]],
    version: str,
    base: int,
    start: int = 0,
    extra: list[bytes] | None = None,
) -> int:
    """One prediction per minute per machine; returns how many were produced."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**kafka_config(settings, acks="all", linger_ms=5))
    n = 0
    for eid, probs in series.items():
        for i, p in enumerate(probs):
            rec = Prediction(
                eid,
                base + (start + i) * MIN,
                p,
                0.5,
                version,
                30,
                1_800_000,
                50,
                (("temp", 0.6), ("vib", 0.3)),
            )
            producer.send(topic, key=eid.encode(), value=encode_prediction(rec))
            n += 1
    for raw in extra or []:
        producer.send(topic, key=b"bad", value=raw)
    producer.flush()
    producer.close()
    return n


def flux(settings: Settings, query: str) -> list[dict[str, Any]]:
    """Rows of a Flux query (record values)."""
    with influx_client(settings) as client:
        tables = client.query_api().query(query, org=settings.influx_org)
    return [dict(r.values) for t in tables for r in t.records]


def risk_points(settings: Settings, eid: str) -> list[dict[str, Any]]:
    return flux(
        settings,
        f'from(bucket: "{settings.influx_bucket}") |> range(start: -3h) '
        f'|> filter(fn: (r) => r._measurement == "failure_risk" and r.equipment_id == "{eid}") '
        '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
    )


def alert_points(settings: Settings, eid: str) -> list[dict[str, Any]]:
    rows = flux(
        settings,
        f'from(bucket: "{settings.influx_bucket}") |> range(start: -3h) '
        f'|> filter(fn: (r) => r._measurement == "alerts" and r.equipment_id == "{eid}") '
        '|> pivot(rowKey: ["_time", "level"], columnKey: ["_field"], valueColumn: "_value")',
    )
    return sorted(rows, key=lambda r: r["_time"])


class Running:
    """An AlertingService in a thread (real consumer, producer, InfluxDB, store)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group: str,
        db: Path,
        version: str,
        rules: Rules,
        sinks: tuple[str, ...] = (),
    ) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        self.consumer = KafkaConsumer(**stage_consumer_config(settings, group))
        self.producer = KafkaProducer(**kafka_config(settings, acks="all"))
        self.client = influx_client(settings, timeout_ms=3000)
        self.conn = store.connect(db)
        config = AlertConfig(
            topic=topic,
            dlq_topic=f"{topic}.dlq",
            group=group,
            bucket=settings.influx_bucket,
            sinks=sinks,
            backoff_max_s=1.0,
            deadman_every_s=3600,
        )
        self.service = AlertingService(
            self.consumer,
            self.producer,
            InfluxWriter(self.client, settings.influx_bucket, settings.influx_org),
            self.conn,
            rules,
            config,
            Silences,
            lambda v: v == version,
        )
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.service.run(self.stop, idle_exit_s=self.idle_exit)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def start(self, idle_exit: float | None = None) -> Running:
        self.idle_exit = idle_exit
        self.thread.start()
        return self

    def join(self, timeout: float = 60) -> None:
        if self.idle_exit is not None:
            self.thread.join(timeout)
        self.stop.set()
        self.thread.join(timeout)
        self.consumer.close()
        self.producer.close()
        self.client.close()
        if self.error is not None:
            raise self.error
