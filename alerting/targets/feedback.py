"""``feedback``: the labels of closed tickets to ``PLANTWATCH_TOPIC_FEEDBACK`` (always on).

`plantwatch tickets close` queues them; operators' outcomes become training labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerting.targets import TargetEnv, target

if TYPE_CHECKING:
    from alerting.outbox import Sender


@target("feedback", choosable=False, order=40)
def feedback(env: TargetEnv) -> Sender:
    """Produce to the feedback topic and wait for the acknowledgement."""
    from alerting.sinks import kafka_sender

    return kafka_sender(env.producer, env.settings.topic_feedback)
