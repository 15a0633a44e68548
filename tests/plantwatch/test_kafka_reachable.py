"""The reachability check that runs before any Kafka client (no broker started)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from pipeline.errors import ConnectionCheckError
from plantwatch.cli import cli
from plantwatch.kafka_check import check_kafka_reachable, wait_for_kafka
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


class _Clock:
    """A fake monotonic clock that ``sleep`` advances; ``on_sleep`` runs at each sleep."""

    def __init__(self, on_sleep: Callable[[int], object] = lambda n: None) -> None:
        self.now, self.sleeps, self.on_sleep = 100.0, [], on_sleep

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


def _waiting(servers: str, wait_s: float) -> Settings:
    return load_settings(
        {"kafka_bootstrap_servers": servers, "kafka_start_wait_s": wait_s}, read_env=False
    )


def test_without_a_wait_the_check_fails_at_once(closed_port: int) -> None:
    clock, lines = _Clock(), []
    with pytest.raises(ConnectionCheckError) as caught:
        wait_for_kafka(_waiting(f"127.0.0.1:{closed_port}", 0), lines.append, clock.sleep,
                       lambda: clock.now)  # fmt: skip
    assert clock.sleeps == []
    assert lines == []
    assert "waited" not in str(caught.value)


def test_the_wait_backs_off_and_gives_up_naming_the_cause_and_the_setting(
    closed_port: int,
) -> None:
    clock, lines = _Clock(), []
    with pytest.raises(ConnectionCheckError) as caught:
        wait_for_kafka(_waiting(f"127.0.0.1:{closed_port}", 30), lines.append, clock.sleep,
                       lambda: clock.now)  # fmt: skip
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 2.5]  # 30 s in all
    message = str(caught.value)
    assert f"127.0.0.1:{closed_port} refused the connection" in message
    assert message.endswith("(waited 30 s, PLANTWATCH_KAFKA_START_WAIT_S)")
    # The cause at the first failure, then at most every 10 s (at 0, 12.5 and 22.5 s).
    assert len(lines) == 3
    assert lines[0].startswith("waiting for Kafka, 30 s left (PLANTWATCH_KAFKA_START_WAIT_S): ")


def test_the_wait_ends_when_the_broker_listens(closed_port: int) -> None:
    server = socket.socket()

    def listen(n: int) -> None:  # the "broker" starts listening during the third pause
        if n == 3:
            server.bind(("127.0.0.1", closed_port))
            server.listen()

    clock, lines = _Clock(listen), []
    try:
        wait_for_kafka(_waiting(f"127.0.0.1:{closed_port}", 60), lines.append, clock.sleep,
                       lambda: clock.now)  # fmt: skip
    finally:
        server.close()
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert lines[-1] == f"Kafka answers at 127.0.0.1:{closed_port} after 3 failed tries"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "a finite number >= 0"),
        ("nan", "a finite number >= 0"),
        ("soon", "a valid number, unable to parse string as a number"),
    ],
)
def test_a_bad_wait_is_refused_naming_the_setting(value: str, expected: str) -> None:
    result = CliRunner().invoke(
        cli, ["--kafka-start-wait-s", value, "dead-letters"], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"plantwatch: error: invalid setting --kafka-start-wait-s={value!r}: expected {expected}"
    )


def _serve(answer: bytes | None) -> tuple[socket.socket, int]:
    """A loopback server that reads one request and answers ``answer`` (None: says nothing)."""
    import contextlib
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            if answer is not None:
                conn.sendall(answer)
            with contextlib.suppress(OSError):
                conn.recv(1024)  # until the client hangs up

    threading.Thread(target=run, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "answered like HTTP"),
        (b"\x00\x00\x00\x08\x00\x00\x00\x07abcd", "answered something else"),
        (None, "did not answer a Kafka request"),
    ],
)
def test_a_port_that_is_not_kafka_is_named_at_once(answer: bytes | None, words: str) -> None:
    import time

    from plantwatch.kafka_check import check_kafka_login

    server, port = _serve(answer)
    with server:
        started = time.monotonic()
        with pytest.raises(ConnectionCheckError) as caught:
            check_kafka_login(_settings(f"127.0.0.1:{port}"), timeout_s=1.0)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert f"127.0.0.1:{port} is not a Kafka broker" in message
    assert words in message
    assert "PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS" in message
