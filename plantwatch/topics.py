"""Create plantwatch's topics when they are missing (with a chosen partition count).

Auto-created topics get the broker's defaults and a noisy first produce; a stage creates
its output topics itself, with as many partitions as its input, so that one machine's
records keep one partition all the way through.
"""

from __future__ import annotations

from typing import Any

from plantwatch.connections import kafka_config, kafka_errors
from plantwatch.settings import Settings


def standard_topics(settings: Settings) -> list[str]:
    """Every topic name the settings define."""
    names = [
        n for n in type(settings).model_fields if n.startswith("topic_") and n != "topic_partitions"
    ]
    return [str(getattr(settings, name)) for name in names]


def partitions_of(settings: Settings, topic: str) -> int | None:
    """The partition count of an existing topic (None if it does not exist)."""
    from kafka import KafkaConsumer

    with kafka_errors(settings):
        consumer = KafkaConsumer(**kafka_config(settings, enable_auto_commit=False))
        try:
            parts = consumer.partitions_for_topic(topic)
        finally:
            consumer.close()
    return len(parts) if parts else None


def ensure_topics(
    settings: Settings, topics: dict[str, int], configs: dict[str, str] | None = None
) -> list[str]:
    """Create the missing ones of ``topics`` (name -> partitions); returns those created.

    ``configs``: topic settings for the ones created, e.g. ``{"cleanup.policy": "compact"}``.
    """
    from kafka import KafkaAdminClient

    with kafka_errors(settings):
        admin = KafkaAdminClient(**kafka_config(settings))
        try:
            existing = set(admin.list_topics())
            missing: dict[str, dict[str, Any]] = {
                name: {"num_partitions": n, "replication_factor": -1, "configs": configs or {}}
                for name, n in topics.items()
                if name not in existing
            }
            if missing:
                admin.create_topics(missing, raise_errors=False)
        finally:
            admin.close()
    return sorted(missing)
