"""`plantwatch dead-letters` against the real broker: time seek, committed records only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from pipeline.deadletter import dead_letter
from plantwatch.cli import cli
from plantwatch.connections import kafka_config
from plantwatch.settings import Settings

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def _produce(settings: Settings, topic: str, unique: str) -> None:
    """2 letters 3 h old, 3 from 10 min ago (one binary), 1 in an aborted transaction."""
    from kafka import KafkaProducer

    now = int(time.time() * 1000)
    letters = [
        (now - 3 * HOUR_MS, "not_json", b"old"),
        (now - 3 * HOUR_MS + 1, "not_json", b"old"),
        (now - 600_000, "not_json", b"pump-1,17,3.2"),
        (now - 599_000, "too_late", b'{"equipment_id": "pump-1"}'),
        (now - 598_000, "not_a_feature_record", b"PWF\x01\xff"),
    ]
    producer = KafkaProducer(**kafka_config(settings))
    for i, (ts, reason, value) in enumerate(letters):
        d = dead_letter("telemetry", 0, i, ts, b"pump-1", value, reason, f"detail {i}")
        producer.send(topic, key=d.key, value=d.value, headers=d.headers, timestamp_ms=ts)
    producer.flush()
    producer.close()
    aborted = KafkaProducer(**kafka_config(settings), transactional_id=f"dlq-{unique}")
    aborted.init_transactions()
    aborted.begin_transaction()
    d = dead_letter("telemetry", 0, 99, now, b"pump-1", b"aborted", "not_json", "never committed")
    aborted.send(topic, key=d.key, value=d.value, headers=d.headers, timestamp_ms=now - 1000)
    aborted.flush()
    aborted.abort_transaction()
    aborted.close()


def test_dead_letters_reads_the_committed_letters_since_a_time(
    live_services: Settings, make_topic: Callable[[str], str], unique: str
) -> None:
    topic = make_topic(f"dlq-{unique}")
    _produce(live_services, topic, unique)

    result = CliRunner().invoke(
        cli, ["dead-letters", "--topic", topic, "--since", "1h", "--limit", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["topics"] == {topic: 3}  # not the 3-hour-old ones, not the aborted one
    assert {(c["reason"], c["count"]) for c in doc["counts"]} == {
        ("not_json", 1),
        ("too_late", 1),
        ("not_a_feature_record", 1),
    }
    newest = doc["newest"]
    assert [n["reason"] for n in newest] == ["not_a_feature_record", "too_late"]
    assert "value" not in newest[0]
    assert newest[0]["value_base64"] == "UFdGAf8="  # b"PWF\x01\xff": not UTF-8
    assert (newest[1]["source_topic"], newest[1]["source_offset"]) == ("telemetry", 3)

    result = CliRunner().invoke(cli, ["dead-letters", "--topic", topic, "--since", "4h"])
    assert result.exit_code == 0, result.output
    assert f"dead letters since 4h: 5 in {topic}" in result.output
    assert "detail: detail 2" in result.output  # the precise reason travels with the letter
    assert "never committed" not in result.output

    result = CliRunner().invoke(
        cli, ["dead-letters", "--topic", topic, "--since", "4h", "--reason", "not_jsn"]
    )
    assert result.exit_code == 0, result.output
    assert "no letter has reason not_jsn" in result.output
    assert "not_a_feature_record, not_json, too_late" in result.output


@pytest.fixture
def status_dlq(
    live_services: Settings,
    make_topic: Callable[[str], str],
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The letters of :func:`_produce` in the ingest DLQ topic that `status` reads."""
    topic = make_topic(f"dlq-st-{unique}")
    _produce(live_services, topic, unique)
    monkeypatch.setenv("PLANTWATCH_TOPIC_TELEMETRY_DLQ", topic)
    monkeypatch.setenv("PLANTWATCH_TOPIC_FEATURES_DLQ", f"nosuch-{unique}")
    return topic


def test_status_counts_the_dead_letters_per_topic_and_reason(status_dlq: str, unique: str) -> None:
    topic = status_dlq

    result = CliRunner().invoke(cli, ["status", "--since", "1h", "--json"])
    assert result.exit_code == 0, result.output
    dead = json.loads(result.stdout)["dead_letters"]
    assert dead["topics"][topic] == 3  # not the 3-hour-old ones, not the aborted one
    assert dead["reasons"][topic] == {"not_a_feature_record": 1, "not_json": 1, "too_late": 1}
    assert dead["missing_topics"] == [f"nosuch-{unique}"]
    assert f"nosuch-{unique}" not in dead["topics"]

    result = CliRunner().invoke(cli, ["status", "--since", "4h"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "dead letters since 4h (`plantwatch dead-letters` shows them)" in lines
    row = next(line.split() for line in lines if line.strip().startswith(topic))
    assert row[:4] == [topic, "5", "not_json", "3,"]
    assert any(f"nosuch-{unique}" in line and "does not exist" in line for line in lines)


def test_status_estimates_a_big_dead_letter_topic_from_offsets(
    status_dlq: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plantwatch import deadletters

    topic = status_dlq
    monkeypatch.setattr(deadletters, "COUNT_MOST", 4)

    result = CliRunner().invoke(cli, ["status", "--since", "1h", "--json"])
    assert result.exit_code == 0, result.output
    dead = json.loads(result.stdout)["dead_letters"]
    # 3 letters, the aborted one and its abort marker: 5 offsets, more than 4, so only the
    # newest 4 offsets are read (2 letters) and the count is the offset span
    assert dead["estimated"] is True
    assert dead["topics"][topic] == 5
    assert dead["reasons_of_newest"] == 2
    assert dead["reasons"][topic] == {"not_a_feature_record": 1, "too_late": 1}

    result = CliRunner().invoke(cli, ["status", "--since", "1h"])
    assert result.exit_code == 0, result.output
    row = next(line.split() for line in result.output.splitlines() if topic in line)
    assert row[:3] == [topic, "about", "5"]
    assert "reasons of the newest 2 letters" in result.output
