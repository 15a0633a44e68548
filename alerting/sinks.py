"""The transports of the ticket targets (:mod:`alerting.targets`): HTTP, Kafka, InfluxDB.

Each sender takes an :class:`~alerting.store.OutboxRow` and raises
:class:`~alerting.errors.DeliveryError` when the target did not take it.
"""

from __future__ import annotations

from typing import Any

from alerting.errors import (
    DeliveryError,
    FatalWriteError,
    RefusedWriteError,
    TransientWriteError,
)
from alerting.influx import InfluxWriter
from alerting.outbox import Sender
from alerting.store import OutboxRow
from alerting.webhook import WebhookSink


def webhook_sender(sink: WebhookSink) -> Sender:
    """POST the ticket document with its incident key as ``Idempotency-Key``."""

    def send(row: OutboxRow) -> None:
        sink.send(row.msg_key, row.payload)

    return send


def kafka_sender(producer: Any, topic: str, timeout_s: float = 15.0) -> Sender:
    """Produce the payload to ``topic``, keyed by equipment id, and wait for the ack."""

    def send(row: OutboxRow) -> None:
        from kafka.errors import KafkaError

        equipment = row.msg_key.rsplit(":", 1)[0]  # incident key = equipment:start
        try:
            producer.send(
                topic,
                key=equipment.encode(),
                value=row.payload,
                headers=[("Idempotency-Key", row.msg_key.encode())],
            ).get(timeout=timeout_s)
        except KafkaError as exc:
            raise DeliveryError(f"Kafka topic {topic}: {type(exc).__name__}: {exc}") from None

    return send


def influx_sender(writer: InfluxWriter) -> Sender:
    """Write the payload (one line of the ``tickets`` measurement).

    InfluxDB away: retried later; the configuration or the line itself refused (a field
    type conflict, HTTP 400/422): given up on, as a webhook's 4xx.
    """

    def send(row: OutboxRow) -> None:
        try:
            writer.write([row.payload.decode()])
        except TransientWriteError as exc:
            raise DeliveryError(str(exc)) from None
        except (FatalWriteError, RefusedWriteError) as exc:
            raise DeliveryError(str(exc), retryable=False) from None

    return send
