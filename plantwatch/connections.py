"""Client configuration for Kafka and InfluxDB, built from the settings.

Vendor errors are translated into plantwatch's own, naming the setting to fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.errors import AuthenticationError, ConnectionCheckError
from plantwatch.kafka_check import check_kafka_login, wait_for_kafka
from plantwatch.settings import Settings, env_name

if TYPE_CHECKING:
    from influxdb_client import InfluxDBClient


def kafka_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for any kafka-python client (producer, consumer, admin).

    Secrets are unwrapped here, at the last moment, and never logged.
    """
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = password.get_secret_value() if password else None
    if settings.kafka_ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    config.update(extra)
    return config


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for a kafka-python producer: :func:`kafka_config` plus compression.

    Batches are compressed as ``PLANTWATCH_KAFKA_COMPRESSION`` says (``none`` writes them
    plain); ``extra`` wins, e.g. for a tool with a ``--compression`` option of its own.
    """
    codec = settings.kafka_compression
    return kafka_config(
        settings, **{"compression_type": None if codec == "none" else codec, **extra}
    )


def stage_consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for a stage's consumer (ingest, scorer, alerting).

    Offsets are committed by the stage itself after its outputs are durable, a new group
    starts at the earliest record, and a killed instance's partitions move to the others
    after 10 s (not kafka-python's 45 s).
    """
    return kafka_config(
        settings,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        **extra,
    )


# Settings whose Kafka was reachable and whose secured listener accepted our TLS trust and
# SASL login, this process.
_LOGIN_CHECKED: set[Settings] = set()


@contextlib.contextmanager
def kafka_errors(settings: Settings) -> Iterator[None]:
    """Translate kafka-python's connection and auth errors into plantwatch errors."""
    from kafka.errors import (
        AuthorizationError,
        KafkaError,
        KafkaTimeoutError,
        SaslAuthenticationFailedError,
        UnsupportedSaslMechanismError,
    )

    servers = settings.kafka_bootstrap_servers
    if settings not in _LOGIN_CHECKED:
        wait_for_kafka(settings)
        check_kafka_login(settings)
        _LOGIN_CHECKED.add(settings)
    try:
        yield
    except (
        SaslAuthenticationFailedError,
        UnsupportedSaslMechanismError,
        AuthorizationError,
    ) as exc:
        raise AuthenticationError(
            f"Kafka at {servers} refused the credentials ({type(exc).__name__}); check "
            f"{env_name('kafka_sasl_mechanism')}, {env_name('kafka_sasl_username')} and "
            f"{env_name('kafka_sasl_password')}"
        ) from exc
    except KafkaTimeoutError as exc:
        if "bootstrap" not in str(exc).lower():
            raise ConnectionCheckError(f"Kafka at {servers} timed out: {exc}") from exc
        check_kafka_login(settings)  # raises when TLS trust or the SASL login is the cause
        raise ConnectionCheckError(
            f"cannot reach Kafka at {servers} (set {env_name('kafka_bootstrap_servers')}; "
            "is the broker running? `plantwatch services up` starts a local one)"
        ) from exc
    except KafkaError as exc:
        raise ConnectionCheckError(f"Kafka error from {servers}: {exc}") from exc


def influx_client(settings: Settings, timeout_ms: int = 10_000) -> InfluxDBClient:
    """An influxdb-client for the configured server (no automatic retries: callers decide)."""
    from influxdb_client import InfluxDBClient

    return InfluxDBClient(
        url=settings.influx_url,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
        timeout=timeout_ms,
        verify_ssl=settings.influx_verify_ssl,
        ssl_ca_cert=str(settings.influx_ssl_ca_cert) if settings.influx_ssl_ca_cert else None,
        retries=False,
    )


@contextlib.contextmanager
def influx_errors(settings: Settings) -> Iterator[None]:
    """Translate influxdb-client and urllib3 errors into plantwatch errors."""
    from influxdb_client.rest import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        yield
    except ApiException as exc:
        status = exc.status
        problem = _influx_tls_problem(settings, exc)
        if not status and problem:
            raise ConnectionCheckError(f"InfluxDB at {settings.influx_url}: {problem}") from exc
        if status in (401, 403):
            raise AuthenticationError(
                f"InfluxDB at {settings.influx_url} refused the token "
                f"(HTTP {status} {exc.reason}); check {env_name('influx_token')}"
            ) from exc
        if status == 404:
            raise ConnectionCheckError(
                f"InfluxDB at {settings.influx_url}: not found (HTTP 404: {_message(exc)}); "
                f"check {env_name('influx_org')}={settings.influx_org!r} and "
                f"{env_name('influx_bucket')}={settings.influx_bucket!r}"
            ) from exc
        raise ConnectionCheckError(
            f"InfluxDB at {settings.influx_url} answered HTTP {status}: {_message(exc)}"
        ) from exc
    except (Urllib3Error, OSError) as exc:
        problem = _influx_tls_problem(settings, exc)
        if problem:
            raise ConnectionCheckError(f"InfluxDB at {settings.influx_url}: {problem}") from exc
        raise ConnectionCheckError(
            f"cannot reach InfluxDB at {settings.influx_url} ({type(exc).__name__}); "
            f"set {env_name('influx_url')}; is the server running? "
            "`plantwatch services up` starts a local one"
        ) from exc


def _influx_tls_problem(settings: Settings, exc: BaseException) -> str | None:
    """A TLS failure behind an influxdb-client or urllib3 error, as a hint naming the setting."""
    texts = []
    cause: BaseException | None = exc
    for _ in range(6):
        if cause is None:
            break
        texts.append(f"{type(cause).__name__} {cause} {getattr(cause, 'reason', '')}")
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else cause.__cause__
    text = " ".join(texts)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "the server's TLS certificate is not trusted (certificate verify failed); set "
            f"{env_name('influx_ssl_ca_cert')} to the CA certificate (PEM) that signed it "
            f"({env_name('influx_verify_ssl')}=false skips the check: testing only)"
        )
    if "SSLError" in text or "SSL:" in text:
        return (
            f"TLS handshake failed; check {env_name('influx_url')}={settings.influx_url} "
            f"and {env_name('influx_ssl_ca_cert')}"
        )
    return None


def _message(exc: Any) -> str:
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            return " ".join(str(json.loads(body).get("message", body)).split())[:300]
        except (ValueError, AttributeError):
            return " ".join(str(body).split())[:300]
    return " ".join(str(getattr(exc, "reason", exc)).split())[:300]
