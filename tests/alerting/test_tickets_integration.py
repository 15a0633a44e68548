"""Tickets end to end: a flaky webhook gets each incident once; SIGKILL never doubles one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerting import store
from alerting.outbox import Backoff, Dispatcher
from alerting.rules import Rules
from alerting.sinks import webhook_sender
from alerting.webhook import WebhookSink
from plantwatch.settings import Settings
from tests.alerting.helpers import MIN, Running, base_ms, model_version, produce
from tests.alerting.webtarget import TicketTarget

pytestmark = pytest.mark.integration
RULES = Rules(pending_steps=2, repeat_ms=0, deadman_ms=0)
# Two incidents per machine: up, down, up again.
SERIES = [0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9]


def _keys(machines: list[str], base: int) -> set[str]:
    return {f"{m}:{base + t * MIN}" for m in machines for t in (1, 6)}


def test_flaky_webhook_gets_each_ticket_once(
    live_services: Settings, make_topic: Callable[[str], str], unique: str, tmp_path: Path
) -> None:
    s = live_services
    topic = make_topic(f"pred-{unique}")
    make_topic(f"pred-{unique}.dlq")
    version = model_version(tmp_path / "models")
    machines = [f"pump-{unique}-{i}" for i in range(3)]
    base = base_ms()
    produce(s, topic, dict.fromkeys(machines, SERIES), version, base)
    target = TicketTarget(["500", "timeout", "500", "500", "timeout", "500"], sleep_s=1.0)
    db = tmp_path / "a.sqlite"
    run = Running(s, topic, f"g-{unique}", db, version, RULES, sinks=("webhook",)).start(
        idle_exit=3
    )
    sink = WebhookSink(target.url, SecretStr("Bearer t0ken"), timeout_s=0.4)
    dispatcher = Dispatcher(store.connect(db), {"webhook": webhook_sender(sink)}, Backoff(0.1, 0.5))
    dispatcher.start(interval_s=0.05)
    try:
        run.join()
        conn = store.connect(db)
        deadline = time.monotonic() + 30
        while store.outbox_pending(conn).get("webhook") and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        dispatcher.stop()
        target.close()
    assert store.outbox_pending(conn).get("webhook", 0) == 0
    assert dict(target.created) == dict.fromkeys(_keys(machines, base), 1)
    assert target.requests > len(target.created)  # failures were retried
    assert {h["Authorization"] for h in target.headers} == {"Bearer t0ken"}


def _env(
    s: Settings, topic: str, group: str, db: Path, models: Path, tickets: str
) -> dict[str, str]:
    return {
        **os.environ,
        "PLANTWATCH_TOPIC_PREDICTIONS": topic,
        "PLANTWATCH_TOPIC_PREDICTIONS_DLQ": f"{topic}.dlq",
        "PLANTWATCH_TOPIC_TICKETS": tickets,
        "PLANTWATCH_TOPIC_FEEDBACK": f"{tickets}.fb",
        "PLANTWATCH_ALERT_GROUP": group,
        "PLANTWATCH_ALERT_DB": str(db),
        "PLANTWATCH_MODELS_DIR": str(models),
        "PLANTWATCH_ALERT_PENDING_STEPS": "2",
        "PLANTWATCH_ALERT_REPEAT_MS": "0",
        "PLANTWATCH_ALERT_DEADMAN_MS": "0",
    }


def test_sigkill_between_ticket_and_offset_commit(
    live_services: Settings,
    make_topic: Callable[[str], str],
    unique: str,
    tmp_path: Path,
    caught_up: Callable[..., None],
) -> None:
    from tests.conftest import group_lag

    s = live_services
    topic = make_topic(f"pred-{unique}")
    make_topic(f"pred-{unique}.dlq")
    tickets = make_topic(f"tickets-{unique}")
    make_topic(f"tickets-{unique}.fb")
    models = tmp_path / "models"
    version = model_version(models)
    machines = [f"fan-{unique}-{i}" for i in range(3)]
    base = base_ms()
    n = produce(s, topic, dict.fromkeys(machines, SERIES), version, base)
    db, group = tmp_path / "a.sqlite", f"g-{unique}"
    env = _env(s, topic, group, db, models, tickets)
    cmd = [
        sys.executable,
        "-c",
        "from plantwatch.cli import main; main()",
        "alert",
        "--sink",
        "builtin,kafka",
    ]
    log = tmp_path / "alert.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*cmd, "--crash-window", "60"], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        deadline = time.monotonic() + 60
        opened = 0
        while time.monotonic() < deadline and opened < 6 and proc.poll() is None:
            time.sleep(0.1)
            if db.exists():
                opened = len(store.list_tickets(store.connect(db)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert opened == 6, log.read_text()[-2000:]
    assert group_lag(s, group, topic) == n  # killed before the Kafka commit
    with log.open("a") as err:
        done = subprocess.run(
            [*cmd, "--idle-exit", "3"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=90,
            check=False,
        )
    assert done.returncode == 0, log.read_text()[-2000:]
    caught_up(s, group, topic, timeout=10)
    rows = store.list_tickets(store.connect(db))
    assert sorted(r["incident_key"] for r in rows) == sorted(_keys(machines, base))
    assert b"0 tickets" in done.stdout  # the restart applied nothing twice
