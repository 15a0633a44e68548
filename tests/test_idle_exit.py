"""`plantwatch run --idle-exit` while the Kafka broker is down: an outage is not idle input.

`plantwatch run --stages ingest,alert --idle-exit 6` runs while a trickle of telemetry and
predictions keeps both stages busy; then the trickle stops and at once the broker (the real
process, as in ``test_faults.py``) is stopped for 20 s, more than three times the idle
limit. The run and both stages must still be running at the end of the outage (each stage
having logged that it waits for the broker), and after the broker is back they must
consume the records sent after the outage and only then stop by themselves, exit 0,
without any restart. Before the fix each stage counted the outage as idle time and
stopped with exit 0 about 6 s into it, so the run ended as if the input had ended.
About a minute; the scorer is left out (it needs a model, and shares the decision,
:mod:`pipeline.idle`, with the other two).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from plantwatch.settings import Settings
from tests.alerting.helpers import base_ms, model_version, produce
from tests.pipeline_helpers import (
    BROKER_OUTAGE_MARKS,
    records_behind,
    run_overrides,
    settings_of,
    wait_until,
)

pytestmark = BROKER_OUTAGE_MARKS

IDLE_EXIT_S = 6.0
KAFKA_DOWN_S = 20.0
MACHINES = 4
STAGES = ("ingest", "alert")


def _telemetry(i: int, t0: int) -> tuple[bytes, bytes]:
    eid = f"idle-m{i % MACHINES}"
    ts = t0 + (i // MACHINES) * 60_000
    readings = {"temperature": 60.0 + i % 7, "vibration_rms": 0.3, "pressure": 4.0}
    value = {"equipment_id": eid, "ts": ts, "readings": readings, "asset_type": "pump"}
    return eid.encode(), json.dumps(value).encode()


def send_work(settings: Settings, version: str, first: int, n: int, t0: int) -> None:
    """``n`` telemetry records and ``n`` predictions (numbers ``first``..), acknowledged."""
    from kafka import KafkaProducer

    from plantwatch.connections import kafka_config

    producer = KafkaProducer(**kafka_config(settings, acks="all", linger_ms=5))
    try:
        for i in range(first, first + n):
            key, value = _telemetry(i, t0)
            producer.send(settings.topic_telemetry, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    eid = f"idle-m{first % MACHINES}"
    produce(settings, settings.topic_predictions, {eid: [0.1] * n}, version, t0, start=first)


class Trickle:
    """A few records every 0.3 s from a thread, until :meth:`stop` (all acknowledged)."""

    def __init__(self, settings: Settings, version: str, t0: int) -> None:
        self.sent = 0
        self._stop = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                while not self._stop.is_set():
                    send_work(settings, version, self.sent, 2, t0)
                    self.sent += 2
                    self._stop.wait(0.3)
            except BaseException as exc:  # reported by stop()
                self.error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert self.error is None, f"the trickle failed: {self.error!r}"


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_idle_exit_waits_for_the_broker_and_then_finishes_the_work(
    live_services: Settings, unique: str, tmp_path: Path
) -> None:
    from devservices.kafka import KafkaService
    from devservices.process import port_accepts
    from plantwatch.supervisor import settings_env
    from plantwatch.topics import ensure_topics, standard_topics

    version = model_version(tmp_path / "models")  # the alert stage knows this version
    overrides = run_overrides(f"idle-{unique}", tmp_path, tmp_path / "models")
    env = dict(os.environ) | settings_env(live_services) | overrides
    settings = settings_of(overrides)
    ensure_topics(settings, dict.fromkeys(standard_topics(settings), 3))
    kafka = KafkaService.from_settings(live_services)
    assert kafka.running() is not None, "the test broker must be one that plantwatch started"
    host, port = live_services.kafka_hosts[0]
    logs, run_log = tmp_path / "logs", tmp_path / "run.log"
    cmd = [sys.executable, "-m", "plantwatch", "run", "--no-services", "--stages",
           ",".join(STAGES), "--idle-exit", str(IDLE_EXIT_S), "--log-every", "3",
           "--log-dir", str(logs)]  # fmt: skip

    def behind() -> tuple[int, int]:
        return (
            records_behind(settings, settings.ingest_group, settings.topic_telemetry),
            records_behind(settings, settings.alert_group, settings.topic_predictions),
        )

    def stage_logs() -> str:
        return "".join(f"--- {s}.log\n{_text(logs / f'{s}.log')[-3000:]}" for s in STAGES)

    with run_log.open("wb") as out:
        run = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    trickle, t0 = None, base_ms() - 6 * 3_600_000
    try:
        trickle = Trickle(settings, version, t0)
        # Both stages consume the trickle; it stops right before the broker does, so their
        # idle time starts at most a second or so before the outage.
        busy = wait_until(
            lambda: (
                all(f"{s}: assigned" in _text(logs / f"{s}.log") for s in STAGES)
                and max(behind()) < 40
            ),
            120,
        )
        trickle.stop()
        assert busy, f"the stages did not start consuming:\n{stage_logs()}"
        assert run.poll() is None, _text(run_log)
        down_at = time.monotonic()
        kafka.down()
        try:
            time.sleep(KAFKA_DOWN_S)
            alive_through_outage = run.poll() is None
            during = _text(run_log)
        finally:
            kafka.up(lambda _line: None)
        outage_s = time.monotonic() - down_at
        assert alive_through_outage, (
            f"plantwatch run ended during a {outage_s:.0f}s broker outage (--idle-exit "
            f"{IDLE_EXIT_S:g}): exit {run.poll()}\n{during}\n{stage_logs()}"
        )
        assert "finished" not in during, f"a stage stopped during the outage:\n{during}"
        for stage in STAGES:
            assert "waiting for the broker" in _text(logs / f"{stage}.log"), stage_logs()

        # Work after the outage: done by the same processes, which then stop by themselves.
        send_work(settings, version, trickle.sent, 12, t0)
        rc = run.wait(timeout=150)
    finally:
        if trickle is not None:
            trickle._stop.set()
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=60)
        if not port_accepts(host, port, timeout=2) or kafka.running() is None:
            kafka.up(lambda _line: None)
        gc.collect()  # the unclosed sockets of kafka-python, within this test's filter
    text = _text(run_log)
    assert rc == 0, f"{text}\n{stage_logs()}"
    assert behind() == (0, 0), stage_logs()
    for stage in STAGES:
        assert f"run: {stage} finished (exit 0)" in text, text
        assert "Kafka answers again" in _text(logs / f"{stage}.log"), stage_logs()
    assert "restarting" not in text, text
