"""`plantwatch services up | down | status`: both local services together."""

from __future__ import annotations

from devservices.config import ServiceSettings
from devservices.influxdb import InfluxService
from devservices.kafka import KafkaService
from devservices.process import Progress, status_line


def up(settings: ServiceSettings, progress: Progress) -> list[str]:
    """Start (building or fetching first, if needed) Kafka and InfluxDB; idempotent.

    Returns one line per service with its pid and endpoint.
    """
    kafka = KafkaService.from_settings(settings)
    influx = InfluxService.from_settings(settings)
    return [kafka.up(progress), influx.up(progress)]


def down(settings: ServiceSettings, *, purge: bool = False) -> list[str]:
    """Stop the services that plantwatch started (by pid file); safe to call twice.

    Args:
        settings: where the state directory is.
        purge: also delete the services' data (topics, buckets, onboarding).
    """
    kafka = KafkaService.from_settings(settings)
    influx = InfluxService.from_settings(settings)
    lines = [kafka.down(), influx.down(purge=purge)]
    if purge:
        import shutil

        shutil.rmtree(kafka.state_dir, ignore_errors=True)
        lines.append(status_line("state", "purged", str(settings.state_dir)))
    return lines


def status(settings: ServiceSettings) -> list[str]:
    """One line per service: running (pid, endpoint), stopped, or taken by another process."""
    return [
        KafkaService.from_settings(settings).status(),
        InfluxService.from_settings(settings).status(),
    ]
