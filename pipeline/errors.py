"""The exception tree of plantwatch.

Every error that plantwatch raises on purpose derives from :class:`PlantwatchError`;
the command line prints such errors as one line and exits with status 2, and lets
anything else through as a bug with its traceback::

    PlantwatchError
    ├── SettingsError          a setting has a wrong value (names the setting)
    ├── ServiceError           a local development service failed to build or start
    │   └── PortInUseError     a port that a local service needs is taken
    ├── OptionError            a command option has a wrong value (names the option)
    ├── ConnectionCheckError   Kafka or InfluxDB cannot be reached or refused us
    │   └── AuthenticationError  credentials were refused (401/403, SASL)
    ├── OutputError            a stage's output (InfluxDB) did not take a write
    │   ├── TransientOutputError   unavailable for now: pause and retry, nothing is lost
    │   ├── FatalOutputError       refuses this configuration (names the setting)
    │   └── RefusedOutputError     refuses these records themselves: isolate, dead-letter
    ├── StageKafkaError        Kafka refused a stage's batch for good (pipeline.runtime)
    │   ├── FencedError            another instance took over the transactional id
    │   └── OutputsLostError       Kafka did not acknowledge a batch's outputs
    └── QueryError             a history or status query found nothing to show
        ├── UnknownEquipmentError  no data at all for a machine (lists known machines)
        └── EmptyRangeError        data exists, but not in the asked time range

Vendor errors are translated at the edges with ``raise ... from exc``.
"""

from __future__ import annotations


class PlantwatchError(Exception):
    """Root of all errors that plantwatch raises on purpose."""


class SettingsError(PlantwatchError):
    """A setting has a value that plantwatch cannot use.

    Attributes:
        setting: the environment variable name of the setting.
        value: the offending value as the user wrote it (masked for secrets).
        expected: what would have been accepted.
    """

    def __init__(self, setting: str, value: str, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(f"invalid setting {setting}={value!r}: expected {expected}")


class ServiceError(PlantwatchError):
    """A local development service (Kafka, InfluxDB) could not be built or started."""


class PortInUseError(ServiceError):
    """A port that a local service must listen on is already taken by another process."""


class ConnectionCheckError(PlantwatchError):
    """Kafka or InfluxDB could not be reached, or answered with an error."""


class AuthenticationError(ConnectionCheckError):
    """Kafka or InfluxDB refused the configured credentials."""


class OutputError(PlantwatchError):
    """A stage's output did not take a write."""


class TransientOutputError(OutputError):
    """The output is unavailable for now (down, timed out, 5xx, 429); retry later."""


class FatalOutputError(OutputError):
    """The output refuses this configuration (token, bucket, org); names the setting."""


class RefusedOutputError(OutputError):
    """The output refused the records themselves (HTTP 400/413/422): retrying cannot help.

    Attributes:
        detail: the output's own words, on one line.
    """

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class StageKafkaError(PlantwatchError):
    """Kafka refused a stage's batch for good: the stage stops (nothing was committed)."""


class FencedError(StageKafkaError):
    """Another instance with the same transactional id took over."""


class OutputsLostError(StageKafkaError):
    """Kafka did not acknowledge a batch's outputs (before its commit, or in it)."""


class OptionError(PlantwatchError):
    """A command option has a value that the command cannot use.

    Attributes:
        option: the option as written on the command line (``--since``).
        value: the offending value.
        expected: what would have been accepted.
    """

    def __init__(self, option: str, value: str, expected: str) -> None:
        self.option = option
        self.value = value
        self.expected = expected
        super().__init__(f"invalid option {option}={value!r}: expected {expected}")


class QueryError(PlantwatchError):
    """A query of the history found nothing to show."""


class UnknownEquipmentError(QueryError):
    """No measurement holds any data for this machine.

    Attributes:
        equipment_id: the machine asked for.
        known: machines that do have data (sorted).
    """

    def __init__(self, equipment_id: str, bucket: str, known: list[str]) -> None:
        self.equipment_id = equipment_id
        self.known = known
        shown = ", ".join(known[:10]) + (f" … {len(known) - 10} more" if len(known) > 10 else "")
        super().__init__(
            f"no data for equipment {equipment_id!r} in bucket {bucket!r} "
            f"(known machines: {shown or 'none yet'})"
        )


class EmptyRangeError(QueryError):
    """The machine has data, but none in the asked time range."""
