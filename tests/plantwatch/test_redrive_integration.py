"""`plantwatch dead-letters --redrive` against the real broker and the real ingest stage.

Two stories. A gateway flushes two hours of buffered readings; ingest refuses them as
older than its limit (``ts_out_of_range``); the limit is raised and the letters are
redriven; ingest takes them, each once, and a second redrive re-publishes nothing. And a
scorer serves a model the alerting stage does not have yet (``unknown_model_version``);
once it has, the redriven predictions reach InfluxDB.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.contract import Limits, Telemetry, encode
from pipeline.deadletter import REDRIVEN_FROM
from plantwatch.cli import cli
from plantwatch.connections import kafka_config
from plantwatch.deadletters import marks_topic
from plantwatch.settings import Settings
from tests.ingest.helpers import ListSink, run_ingest_service

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def _ingest(settings: Settings, topic: str, group: str, count: int, max_past_ms: int) -> ListSink:
    """The ingest stage in-process until it has read ``count`` more records."""
    return run_ingest_service(settings, topic, group, count, Limits(max_past_ms=max_past_ms))[1]


def _records(settings: Settings, topic: str) -> list[object]:
    """Every committed record of ``topic``, read to its end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka_config(settings, enable_auto_commit=False, isolation_level="read_committed")
    )
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(parts)
    out: list[object] = []
    deadline = time.monotonic() + 30
    while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(records)
    consumer.close()
    return out


def _drop_marks(settings: Settings, dlq: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_config(settings))
    admin.delete_topics([marks_topic(dlq)], raise_errors=False)
    admin.close()


def _redrive(topic: str, *extra: str) -> dict[str, object]:
    args = ["dead-letters", "--topic", f"{topic}.dlq", "--reason", "ts_out_of_range", *extra]
    result = CliRunner().invoke(cli, [*args, "--since", "1h", "--redrive", "--json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.output)
    return doc


def test_redriven_letters_are_ingested_once_after_the_fix(
    live_services: Settings, make_topic: Callable[[str], str], unique: str
) -> None:
    from kafka import KafkaProducer

    topic = make_topic(f"telemetry-{unique}")
    make_topic(f"{topic}.dlq")
    now = int(time.time() * 1000)
    old = [Telemetry("pump-7", now - 2 * HOUR_MS + i * 1000, {"temp": 30.0 + i}) for i in range(3)]
    fresh = [Telemetry("fan-1", now - 60_000 + i * 1000, {"rpm": 900.0}) for i in range(2)]
    producer = KafkaProducer(**kafka_config(live_services, acks="all"))
    trace = [("trace-id", b"gw-7")]  # a producer's own header: back on the copies
    sent = [
        producer.send(topic, key=t.equipment_id.encode(), value=encode(t), headers=trace)
        for t in old
    ]
    for t in fresh:
        producer.send(topic, key=t.equipment_id.encode(), value=encode(t))
    producer.flush()
    producer.close()
    source_partition = sent[0].get(timeout=10).partition

    group = f"g-{unique}"
    first = _ingest(live_services, topic, group, 5, max_past_ms=HOUR_MS)
    assert [t.equipment_id for t in first.flushed] == ["fan-1", "fan-1"]

    doc = _redrive(topic)
    assert doc["redrive"] == {
        "redriven": [
            {"topic": f"{topic}.dlq", "reason": "ts_out_of_range", "to": topic, "letters": 3}
        ],
        "already_redriven": 0,
        "source_topic_missing": {},
        "left": 0,
        "refused_again_skipped": 0,
    }
    records = _records(live_services, topic)
    copies = [r for r in records if REDRIVEN_FROM in dict(r.headers)]  # type: ignore[attr-defined]
    assert len(copies) == 3
    assert {c.partition for c in copies} == {source_partition}  # type: ignore[attr-defined]
    assert [c.value for c in copies] == [encode(t) for t in old]  # type: ignore[attr-defined]
    assert all(c.headers[0] == trace[0] for c in copies)  # type: ignore[attr-defined]
    origins = [dict(c.headers)[REDRIVEN_FROM] for c in copies]  # type: ignore[attr-defined]
    assert all(o.startswith(f"{topic}.dlq[".encode()) for o in origins), origins

    # the limit raised (the default 90 days): the copies are taken, in their order
    second = _ingest(live_services, topic, group, 3, max_past_ms=90 * 24 * HOUR_MS)
    assert second.flushed == old

    again = _redrive(topic)
    assert again["redrive"] == {
        "redriven": [],
        "already_redriven": 3,
        "source_topic_missing": {},
        "left": 0,
        "refused_again_skipped": 0,
    }
    assert len(_records(live_services, marks_topic(f"{topic}.dlq"))) == 3
    listing = CliRunner().invoke(
        cli, ["dead-letters", "--topic", f"{topic}.dlq", "--since", "1h", "--json"]
    )
    assert json.loads(listing.output)["redriven_before"] == 3
    letters = _records(live_services, f"{topic}.dlq")
    assert len(letters) == 3, "no copy was refused again"
    _drop_marks(live_services, f"{topic}.dlq")


def test_redrive_needs_a_reason() -> None:
    result = CliRunner().invoke(cli, ["dead-letters", "--redrive"])
    assert result.exit_code == 2
    assert "--redrive" in result.output
    assert "--reason" in result.output
    assert "Traceback" not in result.output


def test_a_new_redrive_fences_one_still_running(
    live_services: Settings, make_topic: Callable[[str], str], unique: str
) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from pipeline.deadletter import dead_letter

    topic = make_topic(f"telemetry-{unique}")
    dlq = make_topic(f"{topic}.dlq")
    plain = KafkaProducer(**kafka_config(live_services, acks="all"))
    for i in range(3):
        d = dead_letter(topic, 1, i, None, b"pump-3", f"v{i}".encode(), "ts_out_of_range", "x")
        plain.send(dlq, key=d.key, value=d.value, headers=d.headers, partition=0)
    plain.flush()
    plain.close()
    # a redrive that stalls mid-transaction: one copy sent, not committed
    stalled = KafkaProducer(
        **kafka_config(
            live_services,
            acks="all",
            transactional_id=f"{live_services.ingest_group}-redrive",
        )
    )
    stalled.init_transactions()
    stalled.begin_transaction()
    stalled.send(topic, key=b"pump-3", value=b"v0", partition=1)
    stalled.flush()

    doc = _redrive(topic)
    assert doc["redrive"]["redriven"][0]["letters"] == 3  # type: ignore[index]
    with pytest.raises(KafkaError):  # fenced: its copy never becomes visible
        stalled.commit_transaction()
    stalled.close()
    assert sorted(r.value for r in _records(live_services, topic)) == [b"v0", b"v1", b"v2"]  # type: ignore[attr-defined]
    _drop_marks(live_services, dlq)


def test_predictions_of_a_model_the_alerting_stage_lacked_reach_influxdb(
    live_services: Settings, make_topic: Callable[[str], str], unique: str, tmp_path: Path
) -> None:
    from alerting.rules import Rules
    from tests.alerting.helpers import Running, base_ms, model_version, produce, risk_points

    rules = Rules(pending_steps=3, repeat_ms=0, deadman_ms=0)
    topic = make_topic(f"pred-{unique}")
    dlq = make_topic(f"{topic}.dlq")
    deployed, new = model_version(tmp_path / "v1"), model_version(tmp_path / "v2")
    eid = f"pump-{unique}-r"
    produce(live_services, topic, {eid: [0.2, 0.3, 0.4]}, new, base_ms())
    db, group = tmp_path / "alert.sqlite", f"g-{unique}"

    before = Running(live_services, topic, group, db, deployed, rules).start(idle_exit=4)
    before.join()
    assert dict(before.service.metrics.dead) == {"unknown_model_version": 3}
    assert risk_points(live_services, eid) == []

    args = ["dead-letters", "--topic", dlq, "--reason", "unknown_model_version", "--since", "1h"]
    result = CliRunner().invoke(cli, [*args, "--redrive"])
    assert result.exit_code == 0, result.output
    assert f"redriven: 3 letters (3 unknown_model_version from {dlq} to {topic})" in result.output

    after = Running(live_services, topic, group, db, new, rules).start(idle_exit=4)
    after.join()
    assert dict(after.service.metrics.dead) == {}
    points = risk_points(live_services, eid)
    assert [r["probability"] for r in points] == [0.2, 0.3, 0.4]
    assert {r["model_version"] for r in points} == {new}
    _drop_marks(live_services, dlq)


def test_a_copy_refused_again_says_which_redrive_it_came_from(
    live_services: Settings, make_topic: Callable[[str], str], unique: str
) -> None:
    from kafka import KafkaProducer

    topic = make_topic(f"telemetry-{unique}")
    dlq = make_topic(f"{topic}.dlq")
    old = Telemetry("pump-8", int(time.time() * 1000) - 2 * HOUR_MS, {"temp": 30.0})
    producer = KafkaProducer(**kafka_config(live_services, acks="all"))
    producer.send(topic, key=b"pump-8", value=encode(old), headers=[("trace-id", b"gw-8")])
    producer.flush()
    producer.close()
    group = f"g-{unique}"
    _ingest(live_services, topic, group, 1, max_past_ms=HOUR_MS)
    assert _redrive(topic)["redrive"]["redriven"][0]["letters"] == 1  # type: ignore[index]
    _ingest(live_services, topic, group, 1, max_past_ms=HOUR_MS)  # the cause is not fixed

    args = ["dead-letters", "--topic", dlq, "--since", "1h", "--json"]
    doc = json.loads(CliRunner().invoke(cli, args).output)
    newest, first = doc["newest"]
    assert first["redriven_from"] is None
    assert newest["redriven_from"] == f"{dlq}[{first['partition']}]@{first['offset']}"
    assert newest["headers"] == first["headers"] == [{"key": "trace-id", "value": "gw-8"}]
    assert doc["redriven_before"] == 1
    text = CliRunner().invoke(cli, args[:-1]).output
    assert f"refused again after a redrive of {newest['redriven_from']}" in text

    # a redrive run again (say on a schedule) does not loop the refused copy...
    again = _redrive(topic)["redrive"]
    assert again == again | {"redriven": [], "already_redriven": 1, "refused_again_skipped": 1}
    # ...until the operator, having fixed the cause this time, asks for it
    again = _redrive(topic, "--again")["redrive"]
    assert again["redriven"][0]["letters"] == 1  # type: ignore[index]
    assert again["refused_again_skipped"] == 0  # type: ignore[index]
    _drop_marks(live_services, dlq)


def test_a_letter_whose_source_topic_is_gone_is_skipped_not_recreated(
    live_services: Settings, make_topic: Callable[[str], str], unique: str
) -> None:
    from kafka import KafkaAdminClient, KafkaProducer

    from pipeline.deadletter import dead_letter

    dlq = make_topic(f"gone-{unique}.dlq")
    gone = f"gone-{unique}"  # the broker creates topics on first use: this one must stay gone
    producer = KafkaProducer(**kafka_config(live_services, acks="all"))
    d = dead_letter(gone, 0, 5, None, b"pump-1", b"v", "ts_out_of_range", "old")
    producer.send(dlq, key=d.key, value=d.value, headers=d.headers)
    producer.flush()
    producer.close()

    args = ["dead-letters", "--topic", dlq, "--reason", "ts_out_of_range", "--since", "1h"]
    result = CliRunner().invoke(cli, [*args, "--redrive"])
    assert result.exit_code == 0, result.output
    assert f"skipped 1: source topic {gone} does not exist" in result.output
    admin = KafkaAdminClient(**kafka_config(live_services))
    assert gone not in admin.list_topics()
    admin.close()
    _drop_marks(live_services, dlq)
