"""Shared fixtures.

Integration tests (marked ``integration``) talk to the real Kafka broker and InfluxDB
server that the test command (`make test`) starts on loopback; they fail, never skip,
when those are not running. Each test uses its own topics or measurement tags.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantwatch.settings import Settings, load_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CMAPSS = SHARED / "data" / "cmapss"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings the test command exported (PLANTWATCH_* variables)."""
    return load_settings()


@pytest.fixture(scope="session")
def live_services(settings: Settings) -> Settings:
    """The running Kafka and InfluxDB; fails with the way out when they are not up."""
    from plantwatch.services.process import port_accepts

    host, port = settings.kafka_hosts[0]
    influx = settings.influx_url.split("//", 1)[1]
    ihost, _, iport = influx.partition(":")
    missing = []
    if not port_accepts(host, port, timeout=2):
        missing.append(f"Kafka at {settings.kafka_bootstrap_servers}")
    if not port_accepts(ihost, int(iport or 8086), timeout=2):
        missing.append(f"InfluxDB at {settings.influx_url}")
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not running: run the tests with `make test`, "
            "which starts them (or `plantwatch services up` with the same PLANTWATCH_* settings)"
        )
    return settings


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and tag names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic(live_services: Settings, unique: str) -> Iterator[str]:
    """A fresh 3-partition topic, deleted afterwards."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from plantwatch.connections import kafka_config

    name = f"test-{unique}"
    admin = KafkaAdminClient(**kafka_config(live_services))
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    try:
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()
