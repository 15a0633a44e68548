"""The exception tree of plantwatch.

Every error that plantwatch raises on purpose derives from :class:`PlantwatchError`;
the command line prints such errors as one line and exits with status 2, and lets
anything else through as a bug with its traceback::

    PlantwatchError
    ├── SettingsError          a setting has a wrong value (names the setting)
    ├── ServiceError           a local development service failed to build or start
    │   └── PortInUseError     a port that a local service needs is taken
    └── ConnectionCheckError   Kafka or InfluxDB cannot be reached or refused us
        └── AuthenticationError  credentials were refused (401/403, SASL)

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
