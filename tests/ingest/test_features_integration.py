"""Issue 4's acceptance test: ingest -> features topic under repeated SIGKILLs.

The features topic (read_committed) must hold exactly one vector per machine per closed
step, each equal to the offline computation over the same telemetry; and the group's
committed offsets, sampled throughout, must never move back (a commit made inside a
partition's replay did before 2026-11-30; a duplicate followed only when a kill landed
before the replay's end: ``tests/ingest/test_replay_commit.py`` is the pure version).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.config import WindowConfig
from features.offline import step_features_frame
from ingest.contract import validate
from pipeline.featurerecords import MAGIC, decode_feature
from plantwatch.connections import kafka_config
from plantwatch.presets import PLANT_SENSORS
from plantwatch.settings import Settings
from tests.conftest import CommitWatch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = WindowConfig(sensors=PLANT_SENSORS, step_ms=10_000, grace_ms=5_000, window_steps=2)


def _read_all(settings: Settings, topic: str, committed_only: bool = True) -> list[object]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        **kafka_config(
            settings,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if committed_only else "read_uncommitted",
            consumer_timeout_ms=4000,
        ),
    )
    records = list(consumer)
    consumer.close()
    return records


def _count(settings: Settings, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_config(settings, isolation_level="read_committed"))
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    total = sum(consumer.end_offsets(tps).values()) if tps else 0
    consumer.close()
    return total


def test_features_exactly_once_across_sigkills(
    live_services: Settings,
    topic: str,
    unique: str,
    tmp_path: Path,
    run_ingest: Callable[..., None],
) -> None:
    features_topic = f"{topic}.features"
    config_file = tmp_path / "features.json"
    config_file.write_text(json.dumps(CONFIG.to_dict()))
    env = dict(
        os.environ,
        PLANTWATCH_TOPIC_TELEMETRY=topic,
        PLANTWATCH_TOPIC_TELEMETRY_DLQ=f"{topic}.dlq",
        PLANTWATCH_TOPIC_FEATURES=features_topic,
        PLANTWATCH_TOPIC_EVENTS=f"{topic}.events",
        PLANTWATCH_FEATURES_CONFIG=str(config_file),
        PLANTWATCH_INGEST_GROUP=f"g-{unique}",
        PLANTWATCH_INSTANCE_ID="test",
    )
    cli = [sys.executable, "-c", "from plantwatch.cli import main; main()"]
    sim = subprocess.run(
        [
            *cli,
            "simulate",
            "--machines",
            "25",
            "--count",
            "30000",
            "--seed",
            "5",
            "--out-of-order",
            "0.05",
            "--max-delay",
            "2",
            "--no-events",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert sim.returncode == 0, sim.stderr

    watch = CommitWatch(live_services, env["PLANTWATCH_INGEST_GROUP"], topic)
    watch.start()
    rng = random.Random(unique)
    for _ in range(4):
        proc = subprocess.Popen(
            [*cli, "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        target = _count(live_services, features_topic) + rng.randint(50, 400)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _count(live_services, features_topic) < target:
            time.sleep(rng.uniform(0.05, 0.3))
        time.sleep(rng.uniform(0, 0.5))  # kill at a random point, often mid-transaction
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_ingest(live_services, env, tmp_path / "final.log")
    watch.stop()

    # What the features topic holds (committed transactions only).
    streamed: dict[tuple[str, int], np.ndarray] = {}
    for record in _read_all(live_services, features_topic):
        assert record.value[:4] == MAGIC  # type: ignore[attr-defined]  # binary by default
        rec, reason = decode_feature(record.value)  # type: ignore[attr-defined]
        assert reason is None, reason
        assert rec is not None
        assert rec.config == CONFIG.fingerprint()
        key = (rec.equipment_id, rec.step_start)
        assert key not in streamed, f"step emitted twice: {key}"
        streamed[key] = rec.values

    # The offline computation over the very same telemetry.
    now_ms = int(time.time() * 1000)
    rows = []
    for record in _read_all(live_services, topic, committed_only=False):
        samples, rejection = validate(record.value, now_ms)  # type: ignore[attr-defined]
        assert rejection is None
        rows.extend({"equipment_id": s.equipment_id, "ts": s.ts_ms, **s.readings} for s in samples)
    df = pd.DataFrame(rows)
    X, index = step_features_frame(df, CONFIG)
    offline = {
        (e, int(s)): X[i]
        for i, (e, s) in enumerate(zip(index["equipment_id"], index["step_start"], strict=True))
    }

    assert len(offline) > 25 * 100
    assert streamed.keys() == offline.keys(), (
        f"missing {len(offline.keys() - streamed.keys())}, extra {len(streamed.keys() - offline.keys())}"
    )
    for key, vector in offline.items():
        np.testing.assert_allclose(
            streamed[key], vector, rtol=1e-6, atol=1e-6 * 1e4, equal_nan=True, err_msg=str(key)
        )
