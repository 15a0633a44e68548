"""`plantwatch services` on a second, private pair of real services (own ports, own state)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plantwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from plantwatch.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def private_env(live_services: Settings, tmp_path: Path) -> dict[str, str]:
    import os

    kafka_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTWATCH_")}
    env.update(
        PLANTWATCH_STATE_DIR=str(tmp_path / "state"),
        PLANTWATCH_CACHE_DIR=str(live_services.cache_dir),  # reuse the cached builds
        PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_port}",
        PLANTWATCH_KAFKA_CONTROLLER_PORT=str(_free_port()),
        PLANTWATCH_INFLUX_URL=f"http://127.0.0.1:{_free_port()}",
        PLANTWATCH_INFLUX_TOKEN="private-test-token",
        PLANTWATCH_KAFKA_HEAP_MB="256",
    )
    yield env
    _cli(env, "services", "down", timeout=120)


def test_up_is_idempotent_status_and_down_twice(private_env: dict[str, str]) -> None:
    first = _cli(private_env, "services", "up")
    assert first.returncode == 0, first.stderr
    assert "kafka     started" in first.stdout
    assert "influxdb  started" in first.stdout

    started = time.monotonic()
    second = _cli(private_env, "services", "up")
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout
    assert time.monotonic() - started < 30

    status = _cli(private_env, "services", "status")
    assert status.stdout.count("running") == 2, status.stdout

    smoke = _cli(private_env, "smoke")
    assert smoke.returncode == 0, smoke.stderr

    down = _cli(private_env, "services", "down")
    assert down.returncode == 0
    assert "kafka     stopped" in down.stdout
    again = _cli(private_env, "services", "down")
    assert again.returncode == 0
    assert again.stdout.count("not running") == 2
    status = _cli(private_env, "services", "status")
    assert status.stdout.count("stopped") == 2, status.stdout

    # A restart on the same state keeps the data and the onboarding (token still works).
    restart = _cli(private_env, "services", "up")
    assert restart.returncode == 0, restart.stderr
    assert _cli(private_env, "smoke").returncode == 0


def test_busy_port_is_a_clear_error(private_env: dict[str, str], live_services: Settings) -> None:
    env = dict(
        private_env, PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS=live_services.kafka_bootstrap_servers
    )
    result = _cli(env, "services", "up")
    assert result.returncode == 2
    assert "in use by another process" in result.stderr
    assert "PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_mismatch_on_onboarded_server_is_explained(private_env: dict[str, str]) -> None:
    assert _cli(private_env, "services", "up").returncode == 0
    _cli(private_env, "services", "down")
    result = _cli(dict(private_env, PLANTWATCH_INFLUX_TOKEN="another-token-123"), "services", "up")
    assert result.returncode == 2
    assert "onboarded earlier with another token" in result.stderr
    assert "another-token-123" not in result.stderr
