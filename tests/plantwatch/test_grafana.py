"""The provisioned Grafana dashboard queries only what plantwatch writes, on its datasource."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantwatch.history import MEASUREMENTS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "dashboards" / "plantwatch.json"
FIELDS = {
    "failure_risk": {"probability", "threshold", "level", "top_sensors"},
    "alerts": {
        "kind",
        "from_level",
        "to_level",
        "incident_key",
        "reason",
        "probability",
        "silenced",
    },
    "tickets": {"ticket_id", "incident_key", "outcome"},
}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard_queries(doc: dict[str, Any]) -> list[str]:
    return [n["query"] for n in _walk(doc) if isinstance(n.get("query"), str) and "(" in n["query"]]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _datasource_uid() -> str:
    data = yaml.safe_load((ROOT / "grafana/provisioning/datasources/influxdb.yml").read_text())
    return str(data["datasources"][0]["uid"])


def test_every_query_names_only_plantwatch_measurements(doc: dict[str, Any]) -> None:
    queries = dashboard_queries(doc)
    assert len(queries) >= 6
    for query in queries:
        named = set(re.findall(r'_measurement\s*==\s*"([^"]+)"', query))
        assert named, query
        assert named <= set(MEASUREMENTS), query
        for measurement in named & set(FIELDS):
            fields = set(re.findall(r'_field\s*==\s*"([^"]+)"', query))
            if len(named) == 1:
                assert fields <= FIELDS[measurement], query


def test_dashboard_covers_fleet_sensors_alerts_and_tickets(doc: dict[str, Any]) -> None:
    joined = "\n".join(dashboard_queries(doc))
    for measurement in MEASUREMENTS:
        assert f'"{measurement}"' in joined
    assert {v["name"] for v in doc["templating"]["list"]} >= {"equipment", "bucket"}


def test_everything_uses_the_provisioned_datasource(doc: dict[str, Any]) -> None:
    uid = _datasource_uid()
    refs = [n["datasource"] for n in _walk(doc) if "datasource" in n]
    assert refs
    assert all(r == {"type": "influxdb", "uid": uid} for r in refs)


def test_dashboard_provider_and_compose_mount_agree() -> None:
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert f"./grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]
