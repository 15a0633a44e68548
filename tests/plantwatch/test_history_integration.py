"""`plantwatch history` and `plantwatch status` against the real InfluxDB and Kafka."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from plantwatch.cli import cli
from plantwatch.settings import Settings

pytestmark = pytest.mark.integration

T0 = 1735689600000  # 2025-01-01T00:00:00Z
RANGE = ["--since", "2025-01-01", "--until", "2025-01-01T01:00"]


def _write(settings: Settings, lines: list[str]) -> None:
    from influxdb_client import WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    from plantwatch.connections import influx_client

    with influx_client(settings) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=settings.influx_bucket, record=lines, write_precision=WritePrecision.MS
        )


@pytest.fixture
def machine(live_services: Settings, unique: str) -> str:
    """A machine with known telemetry, risk, one alert and one ticket on 2025-01-01."""
    eid = f"hist {unique}"  # a space: tag escaping on the way in, Flux escaping on the way out
    tag = eid.replace(" ", "\\ ")
    _write(
        live_services,
        [
            f"telemetry,equipment_id={tag},site=A temp=70.0,rpm=1500.0 {T0}",
            f"telemetry,equipment_id={tag},site=A temp=71.0 {T0 + 60_000}",
            f"telemetry,equipment_id={tag},site=A temp=72.5,rpm=1510.0 {T0 + 120_000}",
            f'failure_risk,equipment_id={tag},model_version=m-1 probability=0.3,threshold=0.5,level="OK",top_sensors="temp:0.6" {T0 + 60_000}',
            f'failure_risk,equipment_id={tag},model_version=m-1 probability=0.8,threshold=0.5,level="CRITICAL",top_sensors="temp:0.9" {T0 + 120_000}',
            f'alerts,equipment_id={tag},level=CRITICAL kind="transition",from_level="OK",to_level="CRITICAL",incident_key="k-{unique}",reason="p=0.8>=0.5" {T0 + 120_000}',
            f'tickets,equipment_id={tag},status=open ticket_id=7i,incident_key="k-{unique}",outcome="" {T0 + 150_000}',
        ],
    )
    return eid


def test_history_csv_and_plot_hold_every_measurement(machine: str, tmp_path: Path) -> None:
    csv, png = tmp_path / "h.csv", tmp_path / "h.png"
    args = ["history", machine, *RANGE, "--every", "raw", "--csv", str(csv), "--plot", str(png)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert csv.read_text() == (
        "time,rpm,temp,risk,threshold,level,top_sensors,alert,ticket\n"
        "2025-01-01T00:00:00.000Z,1500.0,70.0,,,,,,\n"
        "2025-01-01T00:01:00.000Z,,71.0,0.3,0.5,OK,temp:0.6,,\n"
        "2025-01-01T00:02:00.000Z,1510.0,72.5,0.8,0.5,CRITICAL,temp:0.9,OK->CRITICAL (p=0.8>=0.5),\n"
        "2025-01-01T00:02:30.000Z,,,,,,,,#7 open\n"
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert f"equipment {machine}: 4 rows" in result.output
    assert "latest 0.800 (level CRITICAL)" in result.output
    assert "levels (PLANTWATCH_ALERT_*): WARNING at risk >= " in result.output
    assert "model threshold 0.500 (the model's own, chosen" in result.output
    assert "2025-01-01T00:02:00.000Z  OK->CRITICAL (p=0.8>=0.5)" in result.output


def test_history_one_sensor_mean_per_minute(machine: str, tmp_path: Path) -> None:
    csv = tmp_path / "h.csv"
    args = ["history", machine, *RANGE, "--sensor", "temp", "--every", "2m", "--csv", str(csv)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # temp means over [00:00, 00:02) and [00:02, 00:04), stamped with the window ends
    assert csv.read_text() == (
        "time,temp,risk,threshold,level,top_sensors,alert,ticket\n"
        "2025-01-01T00:01:00.000Z,,0.3,0.5,OK,temp:0.6,,\n"
        "2025-01-01T00:02:00.000Z,70.5,0.8,0.5,CRITICAL,temp:0.9,OK->CRITICAL (p=0.8>=0.5),\n"
        "2025-01-01T00:02:30.000Z,,,,,,,#7 open\n"
        "2025-01-01T00:04:00.000Z,72.5,,,,,,\n"
    )
    assert "sensor means per 120s" in result.output


def test_unknown_sensor_lists_the_machines_sensors(machine: str) -> None:
    result = CliRunner().invoke(cli, ["history", machine, *RANGE, "--sensor", "nosuch"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"plantwatch: error: invalid option --sensor='nosuch': expected a sensor of {machine!r}: rpm, temp"
    ]


def test_empty_range_tells_where_the_data_is(machine: str) -> None:
    result = CliRunner().invoke(
        cli, ["history", machine, "--since", "2024-01-01", "--until", "2024-01-02"]
    )
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line
    assert "its data spans 2025-01-01T00:00:00Z to 2025-01-01T00:02:30Z" in line


def test_unknown_machine_names_bucket_and_known_machines(machine: str, unique: str) -> None:
    result = CliRunner().invoke(cli, ["history", f"nosuch-{unique}", *RANGE])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line
    assert f"no data for equipment 'nosuch-{unique}' in bucket 'plantwatch'" in line
    assert "known machines: " in line


def test_status_json_latest_risk_and_group_lag(
    live_services: Settings,
    unique: str,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No alerting store: open tickets come from the tickets measurement (not from a store
    # file that a stage run by hand on this machine left at the default path).
    monkeypatch.setenv("PLANTWATCH_ALERT_DB", str(tmp_path / "none.sqlite"))
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from plantwatch.connections import kafka_config

    now = int(time.time() * 1000)
    eid = f"st-{unique}"
    _write(
        live_services,
        [
            f'failure_risk,equipment_id={eid},model_version=m-1 probability=0.2,threshold=0.5,level="OK" {now - 120_000}',
            f'failure_risk,equipment_id={eid},model_version=m-2 probability=0.7,threshold=0.6,level="WARNING" {now - 60_000}',
            f'tickets,equipment_id={eid},status=open ticket_id=1i,incident_key="a",outcome="" {now - 60_000}',
        ],
    )
    producer = KafkaProducer(**kafka_config(live_services))
    for i in range(3):
        producer.send(topic, key=b"k", value=str(i).encode(), partition=0)
    producer.flush()
    producer.close()
    group = f"g-{unique}"
    consumer = KafkaConsumer(**kafka_config(live_services, group_id=group))
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
    consumer.close()

    result = CliRunner().invoke(
        cli, ["status", "--json", "--since", "1h", "--group", group, "--group", f"none-{unique}"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    mine = next(m for m in doc["machines"] if m["equipment_id"] == eid)
    assert (mine["risk"], mine["threshold"], mine["level"], mine["model_version"]) == (
        0.7,
        0.6,
        "WARNING",
        "m-2",
    )
    assert mine["open_tickets"] == 1
    groups = {g["group"]: g for g in doc["groups"]}
    assert groups[group]["lag"] == 2
    assert groups[group]["topics"] == {topic: 2}
    assert groups[f"none-{unique}"]["state"] == "not started"
    assert groups[f"none-{unique}"]["lag"] is None
    assert live_services.influx_token.get_secret_value() not in result.output


def test_dashboard_queries_run_on_the_real_server(machine: str) -> None:
    """Each Grafana query, with Grafana's variables filled in, is valid Flux that finds data."""
    import re as _re

    from plantwatch.connections import influx_client
    from plantwatch.settings import load_settings
    from tests.plantwatch.test_grafana import DASHBOARD, dashboard_queries

    settings = load_settings()
    prelude = (
        "v = {timeRangeStart: 2025-01-01T00:00:00Z, timeRangeStop: 2025-01-01T01:00:00Z, "
        "windowPeriod: 1m}\n"
    )
    with influx_client(settings) as client:
        for query in dashboard_queries(json.loads(DASHBOARD.read_text())):
            flux = (
                query.replace("${bucket}", settings.influx_bucket)
                .replace("${equipment:regex}", _re.sub(r"([\\^$.|?*+()\[\]{}/])", r"\\\1", machine))
                .replace("${equipment}", machine)
            )
            imports = "\n".join(line for line in flux.splitlines() if line.startswith("import "))
            body = "\n".join(line for line in flux.splitlines() if not line.startswith("import "))
            tables = client.query_api().query(f"{imports}\n{prelude}{body}")
            assert any(t.records for t in tables), query


def test_group_lag_does_not_count_transaction_markers(
    live_services: Settings, unique: str, make_topic: Any
) -> None:
    """Each transaction ends with a marker that takes an offset; a caught-up stage is at 0."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from plantwatch.connections import kafka_config
    from plantwatch.fleet import group_lags

    topic = make_topic(f"txn-{unique}")
    producer = KafkaProducer(
        **kafka_config(live_services), transactional_id=f"t-{unique}", enable_idempotence=True
    )
    producer.init_transactions()
    for i in range(3):  # records at offsets 0, 2, 4; markers at 1, 3, 5
        producer.begin_transaction()
        producer.send(topic, value=str(i).encode(), partition=0)
        producer.commit_transaction()
    producer.close()
    tp = TopicPartition(topic, 0)
    lags = {}
    for name, offset in (("caught-up", 5), ("two-left", 1)):
        group = f"{name}-{unique}"
        consumer = KafkaConsumer(**kafka_config(live_services, group_id=group))
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
        consumer.close()
        (lag,) = group_lags(live_services, [("other", group)])
        lags[name] = (lag.lag, lag.topics)
    assert lags == {"caught-up": (0, {topic: 0}), "two-left": (2, {topic: 2})}
