"""Issue 3's acceptance test: a seeded simulator mix through the real ingest consumer.

valid + dead letters + duplicates == published, exactly, and every dead letter carries
the reason the simulator says that message must get.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from ingest.service import IngestConfig, IngestService
from pipeline.deadletter import reason_of
from plantwatch.connections import kafka_config
from plantwatch.settings import Settings

pytestmark = pytest.mark.integration


def test_known_mix_is_accounted_for_exactly(
    live_services: Settings, topic: str, unique: str, tmp_path: Path
) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    summary_file = tmp_path / "summary.json"
    env = dict(
        os.environ,
        PLANTWATCH_TOPIC_TELEMETRY=topic,
        PLANTWATCH_TOPIC_EVENTS=f"{topic}-events",
    )
    sim = subprocess.run(
        [
            sys.executable,
            "-c",
            "from plantwatch.cli import main; main()",
            "simulate",
            "--machines",
            "30",
            "--seed",
            "7",
            "--count",
            "6000",
            "--mean-life-steps",
            "60",
            "--repair-steps",
            "5",
            "--stuck",
            "0.02",
            "--dropout",
            "0.02",
            "--spike",
            "0.02",
            "--out-of-order",
            "0.03",
            "--duplicate",
            "0.03",
            "--malformed",
            "0.04",
            "--summary-json",
            str(summary_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert sim.returncode == 0, sim.stderr
    summary = json.loads(summary_file.read_text())
    expect = Counter(summary["by_expect"])
    published = summary["messages"]
    assert sum(expect.values()) == published
    assert expect["duplicate"] > 0
    assert expect["valid"] > 0
    reasons = {k: v for k, v in expect.items() if k not in ("valid", "duplicate")}
    assert len(reasons) >= 8, reasons  # a real mix of contract violations

    consumer = KafkaConsumer(
        **kafka_config(
            live_services,
            group_id=f"g-{unique}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
    )
    producer = KafkaProducer(**kafka_config(live_services, acks="all"))
    service = IngestService(
        consumer, producer, [], IngestConfig(topic=topic, dlq_topic=f"{topic}.dlq")
    )
    metrics = service.run(threading.Event(), max_messages=published, idle_exit_s=60)
    consumer.close()
    producer.close()

    assert metrics.consumed == published
    assert metrics.valid + sum(metrics.dead.values()) + metrics.duplicates == published
    assert metrics.valid == expect["valid"]
    assert metrics.duplicates == expect["duplicate"]
    assert dict(metrics.dead) == reasons

    dlq = KafkaConsumer(
        f"{topic}.dlq", **kafka_config(live_services, group_id=None, auto_offset_reset="earliest")
    )
    letters = []
    while len(letters) < sum(reasons.values()):
        batch = dlq.poll(timeout_ms=5000)
        if not batch:
            break
        for records in batch.values():
            letters.extend(records)
    dlq.close()
    assert Counter(reason_of(m.headers)[0] for m in letters) == Counter(reasons)
