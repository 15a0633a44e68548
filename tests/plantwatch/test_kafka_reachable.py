"""The reachability check that runs before any Kafka client (no broker started)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from plantwatch.cli import cli
from plantwatch.errors import ConnectionCheckError
from plantwatch.kafka_check import check_kafka_reachable
from plantwatch.settings import Settings, load_settings


def _settings(servers: str) -> Settings:
    return load_settings({"kafka_bootstrap_servers": servers}, read_env=False)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_refused_and_an_unknown_server_are_each_named(closed_port: int) -> None:
    servers = f"nosuchhost.invalid:9092,127.0.0.1:{closed_port}"
    with pytest.raises(ConnectionCheckError) as caught:
        check_kafka_reachable(_settings(servers))
    message = str(caught.value)
    assert "nosuchhost.invalid:9092 host name not found" in message
    assert f"127.0.0.1:{closed_port} refused the connection" in message
    assert "PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS" in message


def test_one_server_that_accepts_is_enough(closed_port: int, listening_port: int) -> None:
    check_kafka_reachable(_settings(f"127.0.0.1:{closed_port},127.0.0.1:{listening_port}"))


def test_a_command_names_the_refused_broker_instead_of_timing_out(closed_port: int) -> None:
    servers = f"127.0.0.1:{closed_port}"
    result = CliRunner().invoke(cli, ["--kafka-bootstrap-servers", servers, "dead-letters"])
    assert result.exit_code == 2, result.output
    assert f"cannot reach Kafka: {servers} refused the connection" in result.output
    assert "Traceback" not in result.output
