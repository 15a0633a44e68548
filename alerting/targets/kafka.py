"""``kafka``: each ticket document to the topic ``PLANTWATCH_TOPIC_TICKETS``, keyed by machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerting.targets import TargetEnv, target

if TYPE_CHECKING:
    from alerting.outbox import Sender


@target("kafka", summary="topic PLANTWATCH_TOPIC_TICKETS", order=30)
def kafka(env: TargetEnv) -> Sender:
    """Produce to the tickets topic and wait for the acknowledgement."""
    from alerting.sinks import kafka_sender

    return kafka_sender(env.producer, env.settings.topic_tickets)
