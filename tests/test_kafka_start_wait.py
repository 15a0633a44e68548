"""A stage started before its broker listens (PLANTWATCH_KAFKA_START_WAIT_S).

With the wait set, `plantwatch ingest` started while the real broker is stopped logs
that it waits, stays up, and once the broker is back consumes the telemetry sent before
the outage and stops by itself (--idle-exit), exit 0, nothing behind. Without the wait
the same start fails at once naming the refused broker (exit 2). About 30 s: the broker
(the process ``plantwatch services up`` started) is stopped and started once.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from plantwatch.settings import Settings
from tests.pipeline_helpers import (
    BROKER_OUTAGE_MARKS,
    records_behind,
    run_overrides,
    settings_of,
    wait_until,
)

pytestmark = BROKER_OUTAGE_MARKS

RECORDS = 8


def _send(settings: Settings, t0: int) -> None:
    from kafka import KafkaProducer

    from plantwatch.connections import kafka_config

    producer = KafkaProducer(**kafka_config(settings, acks="all"))
    try:
        for i in range(RECORDS):
            eid = f"wait-m{i % 2}"
            readings = {"temperature": 60.0 + i, "vibration_rms": 0.3, "pressure": 4.0}
            value = {"equipment_id": eid, "ts": t0 + (i // 2) * 60_000, "readings": readings,
                     "asset_type": "pump"}  # fmt: skip
            producer.send(
                settings.topic_telemetry, key=eid.encode(), value=json.dumps(value).encode()
            )
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def test_a_stage_waits_for_a_broker_that_is_not_up_yet(
    live_services: Settings, unique: str, tmp_path: Path
) -> None:
    from devservices.kafka import KafkaService
    from devservices.process import port_accepts
    from plantwatch.supervisor import settings_env
    from plantwatch.topics import ensure_topics, standard_topics

    overrides = run_overrides(f"wait-{unique}", tmp_path, tmp_path / "models")
    env = dict(os.environ) | settings_env(live_services) | overrides
    settings = settings_of(overrides)
    ensure_topics(settings, dict.fromkeys(standard_topics(settings), 3))
    _send(settings, int(time.time() * 1000) - 3_600_000)
    kafka = KafkaService.from_settings(live_services)
    assert kafka.running() is not None, "the test broker must be one that plantwatch started"
    host, port = live_services.kafka_hosts[0]
    cmd = [sys.executable, "-m", "plantwatch", "ingest", "--idle-exit", "3", "--log-every", "1"]
    log = tmp_path / "ingest.log"

    kafka.down()
    try:
        fail_fast = subprocess.run(
            cmd, env=env | {"PLANTWATCH_KAFKA_START_WAIT_S": "0"}, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        with log.open("wb") as out:
            stage = subprocess.Popen(
                cmd, env=env | {"PLANTWATCH_KAFKA_START_WAIT_S": "120"}, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        waiting = wait_until(lambda: "waiting for Kafka" in log.read_text(errors="replace"), 30)
        time.sleep(3)  # still up a while later
        alive = stage.poll() is None
    finally:
        kafka.up(lambda _line: None)
    try:
        rc = stage.wait(timeout=150)
    finally:
        if stage.poll() is None:
            stage.terminate()
            stage.wait(timeout=60)
        if not port_accepts(host, port, timeout=2):
            kafka.up(lambda _line: None)
        gc.collect()
    text = log.read_text(errors="replace")

    assert fail_fast.returncode == 2, fail_fast.stderr
    assert f"cannot reach Kafka: {host}:{port} refused the connection" in fail_fast.stderr
    assert "Traceback" not in fail_fast.stderr
    assert waiting, text
    assert alive, text
    assert "(PLANTWATCH_KAFKA_START_WAIT_S): cannot reach Kafka" in text
    assert rc == 0, text
    assert f"Kafka answers at {host}:{port} after" in text
    assert f"consumed {RECORDS} records: {RECORDS} valid samples" in text
    assert records_behind(settings, settings.ingest_group, settings.topic_telemetry) == 0
