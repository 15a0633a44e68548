"""Errors of the alerting stage.

::

PlantwatchError
├── AlertingError
│   ├── RulesError          a rule or the silences file is wrong (names it)
│   ├── TicketError         a ticket command cannot be done (unknown id, bad DB)
│   ├── DeliveryError       a ticket sink did not take a message (``retryable``)
│   └── DeadLetterError     Kafka did not acknowledge the dead letters
└── OutputError             (pipeline.errors: every stage's InfluxDB writes)
    ├── TransientWriteError InfluxDB is unavailable for now: pause, retry
    ├── FatalWriteError     InfluxDB refuses this configuration (names the setting)
    └── RefusedWriteError   InfluxDB refuses these points (400/413/422): dead letters

The three write errors are :mod:`pipeline.errors`' output errors under the names the
alerting stage has used (:class:`~pipeline.influxlines.LineWriter` raises them).
"""

from __future__ import annotations

from pipeline.errors import (
    FatalOutputError,
    PlantwatchError,
    RefusedOutputError,
    TransientOutputError,
)

TransientWriteError = TransientOutputError
FatalWriteError = FatalOutputError
RefusedWriteError = RefusedOutputError


class AlertingError(PlantwatchError):
    """Root of the alerting stage's errors."""


class RulesError(AlertingError):
    """A rule value or the silences file is not usable."""


class TicketError(AlertingError):
    """A ticket command cannot be carried out."""


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
