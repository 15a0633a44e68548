"""Against the real InfluxDB server: write, query back with Flux, clear auth errors."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from pydantic import SecretStr

from pipeline.errors import AuthenticationError, ConnectionCheckError
from plantwatch.connections import influx_client, influx_errors
from plantwatch.settings import Settings

pytestmark = pytest.mark.integration


def test_write_points_and_read_back_with_flux(live_services: Settings, unique: str) -> None:
    from influxdb_client import Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    s = live_services
    base = int(time.time() * 1000) - 10_000
    points = [
        Point("telemetry")
        .tag("equipment_id", f"it-{unique}")
        .field("temperature", 20.0 + i)
        .time(base + i * 1000, WritePrecision.MS)
        for i in range(5)
    ]
    with influx_client(s) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=s.influx_bucket, record=points)
        tables = client.query_api().query(
            f'from(bucket: "{s.influx_bucket}") |> range(start: -1h) '
            f'|> filter(fn: (r) => r._measurement == "telemetry" and r.equipment_id == "it-{unique}")'
        )
    values = [rec.get_value() for t in tables for rec in t.records]
    assert values == [20.0, 21.0, 22.0, 23.0, 24.0]


def test_rewriting_the_same_point_does_not_double_it(live_services: Settings, unique: str) -> None:
    from influxdb_client import Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    s = live_services
    ts = int(time.time() * 1000)
    point = Point("failure_risk").tag("equipment_id", f"r-{unique}").field("probability", 0.5)
    point = point.time(ts, WritePrecision.MS)
    with influx_client(s) as client:
        writer = client.write_api(write_options=SYNCHRONOUS)
        writer.write(bucket=s.influx_bucket, record=point)
        writer.write(bucket=s.influx_bucket, record=point)
        tables = client.query_api().query(
            f'from(bucket: "{s.influx_bucket}") |> range(start: -1h) '
            f'|> filter(fn: (r) => r.equipment_id == "r-{unique}") |> count()'
        )
    assert [rec.get_value() for t in tables for rec in t.records] == [1]


def test_wrong_token_is_a_clear_authentication_error(live_services: Settings) -> None:
    wrong = live_services.model_copy(update={"influx_token": SecretStr("definitely-wrong-token")})
    with (
        pytest.raises(AuthenticationError) as info,
        influx_errors(wrong),
        influx_client(wrong) as c,
    ):
        c.query_api().query(f'from(bucket: "{wrong.influx_bucket}") |> range(start: -1m)')
    message = str(info.value)
    assert "401" in message
    assert "PLANTWATCH_INFLUX_TOKEN" in message
    assert "definitely-wrong-token" not in message


def test_missing_bucket_names_the_setting(live_services: Settings, unique: str) -> None:
    other = live_services.model_copy(update={"influx_bucket": f"nosuch-{unique}"})
    with (
        pytest.raises(ConnectionCheckError, match="PLANTWATCH_INFLUX_BUCKET"),
        influx_errors(other),
        influx_client(other) as c,
    ):
        c.query_api().query(f'from(bucket: "{other.influx_bucket}") |> range(start: -1m)')


def test_smoke_command_round_trips_both_services(live_services: Settings, unique: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from plantwatch.cli import main; main()",
            "smoke",
            "--equipment-id",
            f"smoke-{unique}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"kafka     ok  produced and read back smoke-{unique}" in result.stdout
    assert "influxdb  ok  wrote and queried back" in result.stdout


def test_smoke_with_wrong_token_fails_in_one_line(live_services: Settings) -> None:
    import os

    env = dict(os.environ, PLANTWATCH_INFLUX_TOKEN="wrong-token-xyz")
    result = subprocess.run(
        [sys.executable, "-c", "from plantwatch.cli import main; main()", "smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "refused the token" in result.stderr
    assert "wrong-token-xyz" not in result.stderr
