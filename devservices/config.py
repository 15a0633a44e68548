"""What the local services read from the settings, without importing the shell.

The shell passes its own settings object (``plantwatch.settings.Settings``); anything with
these attributes will do, so the development services stay below the shell (issue #27).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

# The prefix of every setting's environment variable; the shell's settings use the same
# (tests/devservices/test_config.py checks that the two agree).
ENV_PREFIX = "PLANTWATCH_"


def env_name(field: str) -> str:
    """The environment variable that sets the setting ``field``, for error messages.

    >>> env_name("influx_url")
    'PLANTWATCH_INFLUX_URL'
    """
    return ENV_PREFIX + field.upper()


class ServiceSettings(Protocol):
    """The settings that describe the local Kafka broker and InfluxDB server."""

    @property
    def kafka_bootstrap_servers(self) -> str:
        """Comma-separated ``host:port`` list; the first entry is the local broker."""

    @property
    def kafka_hosts(self) -> list[tuple[str, int]]:
        """The bootstrap servers as (host, port) pairs."""

    @property
    def kafka_controller_port(self) -> int | None:
        """KRaft controller port of the local broker (None: broker port + 1)."""

    @property
    def kafka_version(self) -> str:
        """Apache Kafka version of the local broker."""

    @property
    def kafka_heap_mb(self) -> int:
        """Java heap of the local broker, in MiB."""

    @property
    def kafka_security_protocol(self) -> str:
        """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""

    @property
    def kafka_sasl_mechanism(self) -> str | None:
        """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with a SASL protocol."""

    @property
    def kafka_sasl_username(self) -> str | None:
        """SASL user name."""

    @property
    def kafka_sasl_password(self) -> SecretStr | None:
        """SASL password."""

    @property
    def influx_url(self) -> str:
        """InfluxDB base URL (http or https, on loopback for the local server)."""

    @property
    def influx_org(self) -> str:
        """InfluxDB organization."""

    @property
    def influx_bucket(self) -> str:
        """InfluxDB bucket."""

    @property
    def influx_token(self) -> SecretStr:
        """InfluxDB API token (the local server is onboarded with it)."""

    @property
    def influx_verify_ssl(self) -> bool:
        """Whether to verify the server's TLS certificate."""

    @property
    def influx_ssl_ca_cert(self) -> Path | None:
        """CA certificate (PEM) for a server over HTTPS."""

    @property
    def influxdb_version(self) -> str:
        """InfluxDB version of the local server."""

    @property
    def services_tls_cert(self) -> Path | None:
        """Certificate chain (PEM) the local services serve TLS with."""

    @property
    def services_tls_key(self) -> Path | None:
        """Unencrypted PKCS#8 private key (PEM) of ``services_tls_cert``."""

    @property
    def state_dir(self) -> Path:
        """Where the services keep their data, logs and pid files."""

    @property
    def cache_dir(self) -> Path:
        """Where the built or fetched service binaries are cached, per version."""
