"""docker-compose.yml must offer the same ports, names and variables as the settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from plantwatch.settings import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_ONLY = {"PLANTWATCH_INFLUX_ADMIN_PASSWORD"}  # the compose admin user; not a setting


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def defaults() -> Settings:
    return load_settings(read_env=False)


def _interpolate(value: str) -> str:
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _host_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[-2]) for p in service["ports"]}


def test_has_kafka_influxdb_grafana(compose: dict[str, Any]) -> None:
    assert {"kafka", "influxdb", "grafana"} <= set(compose["services"])


def test_kafka_matches_settings(compose: dict[str, Any], defaults: Settings) -> None:
    kafka = compose["services"]["kafka"]
    host, port = defaults.kafka_hosts[0]
    assert port in _host_ports(kafka)
    env = kafka["environment"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{host}:{port}"
    assert kafka["image"].endswith(":" + defaults.kafka_version)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_influxdb_matches_settings(compose: dict[str, Any], defaults: Settings) -> None:
    influx = compose["services"]["influxdb"]
    assert urlsplit(defaults.influx_url).port in _host_ports(influx)
    env = {k: _interpolate(str(v)) for k, v in influx["environment"].items()}
    assert env["DOCKER_INFLUXDB_INIT_ORG"] == defaults.influx_org
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == defaults.influx_bucket
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == defaults.influx_token.get_secret_value()
    major_minor = ".".join(defaults.influxdb_version.split(".")[:2])
    assert influx["image"] == f"influxdb:{major_minor}"


def test_variables_are_plantwatch_settings() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    text += (ROOT / "grafana/provisioning/datasources/influxdb.yml").read_text()
    used = set(re.findall(r"\$\{(PLANTWATCH_[A-Z_]+)", text))
    known = {env_name(f) for f in Settings.model_fields} | COMPOSE_ONLY
    assert used, "compose should take its names from PLANTWATCH_* variables"
    assert used <= known, used - known


def test_grafana_datasource_points_at_compose_influxdb() -> None:
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/influxdb.yml").read_text())
    source = ds["datasources"][0]
    assert source["type"] == "influxdb"
    assert source["url"] == "http://influxdb:8086"
    assert source["jsonData"]["version"] == "Flux"
