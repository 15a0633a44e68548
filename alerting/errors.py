"""Errors of the alerting stage.

::

PlantwatchError
└── AlertingError
    ├── RulesError          a rule or the silences file is wrong (names it)
    ├── TicketError         a ticket command cannot be done (unknown id, bad DB)
    ├── TransientWriteError InfluxDB is unavailable for now: pause, retry
    ├── FatalWriteError     InfluxDB refuses this configuration (names the setting)
    ├── DeliveryError       a ticket sink did not take a message (``retryable``)
    └── DeadLetterError     Kafka did not acknowledge the dead letters
"""

from __future__ import annotations

from plantwatch.errors import PlantwatchError


class AlertingError(PlantwatchError):
    """Root of the alerting stage's errors."""


class RulesError(AlertingError):
    """A rule value or the silences file is not usable."""


class TicketError(AlertingError):
    """A ticket command cannot be carried out."""


class TransientWriteError(AlertingError):
    """InfluxDB is unavailable for now; nothing was lost, retry later."""


class FatalWriteError(AlertingError):
    """InfluxDB refuses this configuration (token, bucket, org)."""


class DeadLetterError(AlertingError):
    """Kafka did not acknowledge the batch's dead letters; the batch is not committed."""


class DeliveryError(AlertingError):
    """A ticket sink did not take a message.

    Attributes:
        retryable: whether trying again later may succeed (5xx, timeouts, refused
            connections) or not (the target refused the payload itself).
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
