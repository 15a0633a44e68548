"""`plantwatch simulate` against the real broker: what it says it sent is what Kafka holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest.contract import validate
from ingest.events import MaintenanceEvent, decode_event
from ingest.simulator import FaultRates, SimulatorConfig, ticks
from plantwatch.connections import kafka_config
from plantwatch.settings import Settings

pytestmark = pytest.mark.integration

FAULTS = {
    "stuck": 0.05,
    "dropout": 0.05,
    "spike": 0.05,
    "out_of_order": 0.05,
    "duplicate": 0.05,
    "malformed": 0.05,
}
RUN = {"machines": 20, "seed": 11, "mean_life_steps": 40, "repair_steps": 5}


@pytest.fixture
def events_topic(make_topic: Callable[[str], str], unique: str) -> str:
    return make_topic(f"test-{unique}-events")


def _simulate(topic: str, events_topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PLANTWATCH_TOPIC_TELEMETRY=topic, PLANTWATCH_TOPIC_EVENTS=events_topic)
    return subprocess.run(
        [sys.executable, "-c", "from plantwatch.cli import main; main()", "simulate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def _consume(settings: Settings, topic: str, expected: int) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the start), in offset order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_config(settings, enable_auto_commit=False))
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        # one more poll: anything beyond ``expected`` would be a bug too
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def _expected_run(summary: dict[str, Any]) -> tuple[list[Any], list[MaintenanceEvent]]:
    """The messages and events that the CLI's config gives, regenerated here."""
    config = SimulatorConfig(**RUN, start_ms=summary["start_ms"], faults=FaultRates(**FAULTS))
    messages: list[Any] = []
    events: list[MaintenanceEvent] = []
    for tick in ticks(config):
        events.extend(tick.events)
        messages.extend(tick.messages[: summary["messages"] - len(messages)])
        if len(messages) >= summary["messages"]:
            return messages, events
    raise AssertionError("unreachable: ticks() is endless")


def test_published_messages_match_the_summary(
    live_services: Settings, topic: str, events_topic: str, tmp_path: Path
) -> None:
    from kafka.partitioner.default import murmur2

    summary_path = tmp_path / "summary.json"
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in FAULTS.items()]
    run = [f"--{name.replace('_', '-')}={value}" for name, value in RUN.items()]
    result = _simulate(
        topic, events_topic, "--count=3000", *run, *flags, f"--summary-json={summary_path}"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["messages"] == 3000
    assert f"{summary['messages']} messages" in result.stdout
    assert set(summary["by_expect"]) >= {"valid", "duplicate", "missing_field", "not_json"}

    records = _consume(live_services, topic, summary["messages"])
    assert len(records) == summary["messages"]
    now_ms = summary["last_ts_ms"]
    seen_valid: set[bytes] = set()
    got: Counter[str] = Counter()
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 3
        samples, rejection = validate(record.value, now_ms=now_ms)
        if rejection is not None:
            got[rejection.reason] += 1
            continue
        assert samples[0].equipment_id == record.key.decode()
        assert record.timestamp == samples[-1].ts_ms
        if record.value in seen_valid:
            got["duplicate"] += 1
        else:
            got["valid"] += 1
            seen_valid.add(record.value)
    assert dict(got) == summary["by_expect"]
    assert summary["samples"] == got["valid"]
    assert summary["duplicate_samples"] == got["duplicate"]

    messages, events = _expected_run(summary)
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for message in messages:
        by_key[message.key].append(message.value)
    consumed: dict[bytes, list[bytes]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        consumed[record.key].append(record.value)
    assert consumed == by_key  # same bytes, in the same order per machine

    published = [decode_event(r.value) for r in _consume(live_services, events_topic, len(events))]
    assert Counter(e.kind for e in published) == Counter(summary["events"])
    assert sorted(published, key=lambda e: (e.ts_ms, e.equipment_id)) == sorted(
        events, key=lambda e: (e.ts_ms, e.equipment_id)
    )
    assert {e.kind for e in published} == {"failure", "repair"}
    assert all(e.source == "simulator" and e.mode for e in published)


def test_batch_messages_and_rate(
    live_services: Settings, topic: str, events_topic: str, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    result = _simulate(
        topic,
        events_topic,
        "--count=400",
        "--batch-size=10",
        "--rate=800",
        "--no-events",
        f"--summary-json={summary_path}",
    )
    assert result.returncode == 0, result.stderr
    assert "400 messages (valid 400; 4000 valid samples)" in result.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["samples"] == 4000
    assert summary["seconds"] >= 0.3  # the rate limit held it back after 256 messages
    records = _consume(live_services, topic, 400)
    assert len(records) == 400
    assert all(len(validate(r.value, now_ms=r.timestamp)[0]) == 10 for r in records)
    assert _consume(live_services, events_topic, 0) == []
