"""Fault injection: the whole pipeline keeps exactly-once results through crashes and outages.

A seeded simulator stream is published (paced, so that the faults land mid-stream) to
per-test topics while `plantwatch ingest`, `score` and `alert` run as separate processes
that this harness watches like a supervisor (a stage that exits before the work is done
is started again). Meanwhile, at seeded-random moments, the harness:

a) SIGKILLs each stage once and restarts it;
b) stops the Kafka broker (the real process, `KafkaService.down()`) and starts it again;
   the publisher is paused (flushed) for that time; stages that exit on the broker loss
   are restarted and reported;
c) stops influxd for 30 s;
d) makes the ticket webhook (a real local HTTP target) fail for 60 s: HTTP 500 for the
   first half, timeouts for the second.

Afterwards (every group caught up, the outbox empty, every stage idle-exited with 0):

- every expected prediction (each machine's feature steps minus the warm-up) is on the
  predictions topic exactly once per (machine, window_end), and in InfluxDB
  ``failure_risk`` exactly one point per key (counted by key);
- no incident has two tickets in the store; the webhook target created each incident's
  ticket (by Idempotency-Key) and the tickets topic holds every incident (at least once:
  an outbox sink; a copy carries the same incident key);
  none is missing there;
- every malformed message is in the telemetry DLQ (per reason, exactly as many as sent).

The table of faults injected and data checked is printed (``pytest -s``) and written to
``<tmp>/fault-table.txt``. The seed is ``PLANTWATCH_TEST_FAULT_SEED`` (default: random, printed).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ingest.publisher import Publisher
from plantwatch.settings import Settings
from tests.alerting.webtarget import TicketTarget
from tests.pipeline_helpers import (
    expected_predictions,
    prediction_keys,
    records_behind,
    run_overrides,
    settings_of,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    # kafka-python leaves the sockets of refused connects (the broker is down for a while)
    # to the garbage collector; they are collected at the end of the test (gc.collect()).
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

MACHINES, STEPS = 16, 360
RATE = 42.0  # telemetry messages/s: the stream takes about 140 s of publishing
IDLE_EXIT_S = 10.0
KAFKA_DOWN_S = 15.0
INFLUX_DOWN_S = 30.0
WEBHOOK_FAIL_S = 60.0
DEADLINE_S = 480.0


@dataclass
class Fault:
    """One injected fault, for the table."""

    kind: str
    target: str
    at: float
    duration: float = 0.0
    recovered_after: float | None = None
    note: str = ""


@dataclass
class Stage:
    """One pipeline stage process, restarted by the harness until the work is done."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    killed: int = 0
    exits: list[tuple[float, int, str]] = field(default_factory=list)
    next_start: float = 0.0
    fails_in_row: int = 0
    last_kill: bool = False

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"==== start {self.starts + 1}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1

    def exit_reason(self, rc: int) -> str:
        """Why the process that just ended did: killed, idle, or its error line."""
        if rc == -signal.SIGKILL:
            return "SIGKILL (harness)"
        if rc == 0:
            return f"idle exit ({IDLE_EXIT_S:.0f}s without records)"
        text = self.log.read_text(errors="replace").rsplit(f"==== start {self.starts}\n", 1)[-1]
        errors = [ln for ln in text.splitlines() if ln.startswith("plantwatch: error")]
        found = errors or text.strip().splitlines()[-1:] or ["?"]
        return found[-1][:110]

    def kill(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.killed += 1
        self.last_kill = True
        return True


class GatedPublisher(Publisher):
    """A paced publisher that the harness can pause while it stops the broker: everything
    sent is acknowledged and the producer closed first (so that no client of this process
    keeps connecting to the stopped broker), and a new producer takes over after."""

    def __init__(self, new_producer: Callable[[], Any], rate: float) -> None:
        super().__init__(new_producer(), rate=rate)
        self._new_producer = new_producer
        self.open = threading.Event()
        self.open.set()
        self.paused = threading.Event()

    def send(
        self, topic: str, key: bytes, value: bytes, *, timestamp_ms: int | None = None
    ) -> None:
        if not self.open.is_set():
            self.flush(timeout=120)
            self._producer.close(timeout=30)
            self.paused.set()
            self.open.wait()
            self._producer = self._new_producer()
            self.paused.clear()
            assert self._rate is not None
            self._started = self._clock() - self.sent / self._rate  # no burst after the pause
        super().send(topic, key, value, timestamp_ms=timestamp_ms)

    def close(self) -> None:
        self._producer.close(timeout=30)


def _publish(settings: Settings, seed: int, publisher_box: dict[str, Any]) -> None:
    """The seeded simulator stream (what `plantwatch simulate` sends) through a GatedPublisher."""
    from kafka import KafkaProducer

    from ingest.faults import FaultRates
    from ingest.simpublish import KeyPartitioned, publish_run
    from ingest.simulator import SimulatorConfig, plan_steps
    from plantwatch.connections import kafka_config

    count = MACHINES * STEPS
    probe = SimulatorConfig(
        machines=MACHINES,
        seed=seed,
        interval_ms=60_000,
        faults=FaultRates(malformed=0.01, duplicate=0.01),
        mean_life_steps=300,
        repair_steps=30,
    )
    # Event time: a 6-hour span ending 12-111 hours ago (by seed), so that the InfluxDB
    # points of the e2e test (same machine ids and model, ending now) are not in this run's
    # range; well inside the broker's 7-day retention, which deletes older records.
    hours_back = 12 + seed % 100
    span = plan_steps(probe, count) * probe.interval_ms
    start = int(time.time() * 1000) - hours_back * 3_600_000 - span
    config = dataclasses.replace(probe, start_ms=start)

    def new_producer() -> KeyPartitioned:
        producer = KeyPartitioned(
            KafkaProducer(
                **kafka_config(
                    settings,
                    acks="all",
                    linger_ms=20,
                    retries=20,
                    retry_backoff_ms=500,
                    max_in_flight_requests_per_connection=1,
                    client_id="plantwatch-fault-sim",
                )
            )
        )
        for name in (settings.topic_telemetry, settings.topic_events):
            producer.partition(name, b"")
        return producer

    publisher = GatedPublisher(new_producer, RATE)
    publisher_box["publisher"] = publisher
    try:
        publisher_box["summary"] = publish_run(
            publisher,
            config,
            topic=settings.topic_telemetry,
            events_topic=settings.topic_events,
            count=count,
            duration=None,
        )
    except BaseException as exc:  # reported by the harness
        publisher_box["error"] = exc
    finally:
        publisher.close()


def _dlq_reasons(settings: Settings, topic: str) -> Counter[str]:
    """Dead letters of a topic per ``plantwatch.reason`` header (read_committed)."""
    from pipeline.deadletter import reason_of
    from plantwatch.report import read_records

    return Counter(reason_of(r.headers)[0] for r in read_records(settings, topic))


def _influx_keys(
    live: Settings, machines: list[str], version: str, first: int, last: int
) -> Counter[Any]:
    """``failure_risk`` probability points of a model version per (equipment_id, time in ms)."""
    from datetime import UTC, datetime

    from plantwatch.connections import influx_client
    from plantwatch.flux import flux_params

    params = flux_params(
        {
            "bucket": live.influx_bucket,
            "start": datetime.fromtimestamp(first / 1000, UTC),
            "stop": datetime.fromtimestamp((last + 1) / 1000, UTC),
            "machines": machines,
            "version": version,
        }
    )
    query = f"""
{params}
from(bucket: params.bucket)
  |> range(start: params.start, stop: params.stop)
  |> filter(fn: (r) => r._measurement == "failure_risk" and r._field == "probability")
  |> filter(fn: (r) => r.model_version == params.version)
  |> filter(fn: (r) => contains(value: r.equipment_id, set: params.machines))
  |> group(columns: ["equipment_id", "_time"])
  |> count()
"""
    keys: Counter[Any] = Counter()
    with influx_client(live) as client:
        for table in client.query_api().query(query):
            for r in table.records:
                ms = int(r.values["_time"].timestamp() * 1000)
                keys[(str(r.values["equipment_id"]), ms)] += int(r.get_value())
    return keys


def test_pipeline_survives_injected_faults(
    live_services: Settings, sim_model_dir: Path, unique: str, tmp_path: Path
) -> None:
    from alerting import store
    from devservices.influxdb import InfluxService
    from devservices.kafka import KafkaService
    from devservices.process import port_accepts
    from plantwatch.report import read_topic
    from plantwatch.supervisor import settings_env
    from plantwatch.topics import ensure_topics, standard_topics

    seed = int(os.environ.get("PLANTWATCH_TEST_FAULT_SEED") or random.randrange(1_000_000))
    rng = random.Random(seed)
    t_begin = time.monotonic()
    target = TicketTarget([], sleep_s=2.0)
    overrides = run_overrides(f"faults-{unique}", tmp_path, sim_model_dir) | {
        "PLANTWATCH_ALERT_SINKS": "builtin,webhook,kafka",
        "PLANTWATCH_ALERT_WEBHOOK_URL": target.url,
        "PLANTWATCH_ALERT_WEBHOOK_TIMEOUT_S": "1",
        "PLANTWATCH_ALERT_RETRY_MAX_S": "4",
    }
    env = dict(os.environ) | settings_env(live_services) | overrides
    settings = settings_of(overrides)
    ensure_topics(settings, dict.fromkeys(standard_topics(settings), 3))
    kafka = KafkaService.from_settings(live_services)
    influx = InfluxService.from_settings(live_services)
    assert kafka.running() is not None, "the test broker must be one that plantwatch started"
    assert influx.running() is not None, "the test influxd must be one that plantwatch started"
    host, port = live_services.kafka_hosts[0]
    logs = tmp_path / "logs"
    logs.mkdir()
    program = [sys.executable, "-m", "plantwatch"]
    idle = ["--idle-exit", str(IDLE_EXIT_S), "--log-every", "5"]
    stages = {
        name: Stage(name, [*program, name, *idle], env, logs / f"{name}.log")
        for name in ("ingest", "score", "alert")
    }

    # The seeded schedule: Kafka, InfluxDB, webhook, then one SIGKILL per stage at a moment
    # away from the broker outage (a stage is dead then anyway) and from the other kills.
    kafka_at = rng.uniform(55, 75)
    influx_at = rng.uniform(90, 110)
    webhook_at = rng.uniform(20, 40)
    kill_at: dict[str, float] = {}
    for name in rng.sample(sorted(stages), k=3):
        while True:
            at = rng.uniform(15, 140)
            clear_of_kafka = not (kafka_at - 5 <= at <= kafka_at + KAFKA_DOWN_S + 25)
            if clear_of_kafka and all(abs(at - other) > 8 for other in kill_at.values()):
                kill_at[name] = at
                break
    faults: list[Fault] = []
    lock = threading.Lock()
    errors: list[str] = []
    box: dict[str, Any] = {}
    t0 = time.monotonic()

    def now() -> float:
        return time.monotonic() - t0

    def kafka_fault() -> None:
        time.sleep(max(0.0, kafka_at - now()))
        fault = Fault("broker stop", f"kafka {host}:{port}", now(), KAFKA_DOWN_S)
        publisher = box.get("publisher")
        if publisher is not None and pub_thread.is_alive():
            publisher.open.clear()
            wait_until(lambda: publisher.paused.is_set() or not pub_thread.is_alive(), 120, 0.1)
        fault.at = now()
        try:
            kafka.down()
            time.sleep(KAFKA_DOWN_S)
        finally:
            kafka.up(lambda _line: None)
            if publisher is not None:
                publisher.open.set()
        up = port_accepts(host, port, timeout=2)
        fault.recovered_after = now() - fault.at - KAFKA_DOWN_S if up else None
        fault.note = "publisher paused (flushed) meanwhile"
        with lock:
            faults.append(fault)

    def influx_fault() -> None:
        time.sleep(max(0.0, influx_at - now()))
        fault = Fault("influxd stop", f"influxdb {live_services.influx_url}", now(), INFLUX_DOWN_S)
        try:
            influx.down()
            time.sleep(INFLUX_DOWN_S)
        finally:
            influx.up(lambda _line: None)
        fault.recovered_after = now() - fault.at - INFLUX_DOWN_S
        with lock:
            faults.append(fault)

    def webhook_fault() -> None:
        time.sleep(max(0.0, webhook_at - now()))
        fault = Fault("webhook failing", "ticket webhook", now(), WEBHOOK_FAIL_S)
        before = target.requests
        target.mode = "500"
        time.sleep(WEBHOOK_FAIL_S / 2)
        target.mode = "timeout"
        time.sleep(WEBHOOK_FAIL_S / 2)
        target.mode = None
        failed = target.requests - before
        fault.note = f"{failed} requests answered 500/timeout"
        if failed == 0:  # no ticket was due meanwhile: nothing to recover
            fault.recovered_after = 0.0
            fault.note = "no ticket was sent meanwhile (fault not exercised)"
        else:  # the tickets held back are delivered
            accepted = sum(target.accepted.values())
            ok = wait_until(lambda: sum(target.accepted.values()) > accepted, 120, 0.2)
            fault.recovered_after = now() - fault.at - WEBHOOK_FAIL_S if ok else None
        with lock:
            faults.append(fault)

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")

        return run

    for stage in stages.values():
        stage.start()
    pub_thread = threading.Thread(target=_publish, args=(settings, seed, box), daemon=True)
    pub_thread.start()
    threads = [
        threading.Thread(target=guarded(fn), daemon=True)
        for fn in (kafka_fault, influx_fault, webhook_fault)
    ]
    for thread in threads:
        thread.start()

    pending_kills = dict(kill_at)
    kill_faults: dict[str, Fault] = {}
    done = False
    done_at = 0.0
    lags: tuple[int, ...] = ()
    pending: dict[str, int] = {}
    last_check = 0.0
    try:
        while True:
            t = now()
            if t >= DEADLINE_S:
                state = {s.name: (s.starts, s.exits[-3:]) for s in stages.values()}
                pytest.fail(
                    f"not caught up after {DEADLINE_S:.0f}s: lags {lags}, outbox {pending}, "
                    f"faults running {[th.is_alive() for th in threads]}, publisher running "
                    f"{pub_thread.is_alive()}, stages (starts, last exits) {state}"
                )
            assert "error" not in box, f"the publisher failed: {box['error']!r}"
            assert not errors, errors
            for name, at in list(pending_kills.items()):
                if t >= at:
                    if stages[name].kill():
                        del pending_kills[name]
                        kill_faults[name] = Fault("SIGKILL", name, t)
                    else:  # not running just now (restarting): a little later
                        pending_kills[name] = t + 2
            for stage in stages.values():
                if stage.proc is not None:
                    rc = stage.proc.poll()
                    if rc is None:
                        continue
                    stage.exits.append((t, rc, stage.exit_reason(rc)))
                    stage.proc = None
                    if stage.last_kill:
                        delay, stage.fails_in_row = 1.0, 0
                    elif rc == 0:
                        delay, stage.fails_in_row = 0.5, 0
                    else:
                        stage.fails_in_row += 1
                        delay = min(8.0, 2.0 ** (stage.fails_in_row - 1))
                    stage.next_start = t + delay
                if stage.proc is None and not done and t >= stage.next_start:
                    was_kill = stage.last_kill
                    stage.last_kill = False
                    stage.start()
                    if was_kill and stage.name in kill_faults:
                        fault = kill_faults[stage.name]
                        fault.recovered_after = now() - fault.at
            faults_over = not pending_kills and not any(th.is_alive() for th in threads)
            if not done and faults_over and not pub_thread.is_alive() and t - last_check > 3:
                last_check = t
                lags = (
                    records_behind(settings, settings.ingest_group, settings.topic_telemetry),
                    records_behind(settings, settings.scorer_group, settings.topic_features),
                    records_behind(settings, settings.alert_group, settings.topic_predictions),
                )
                pending = store.outbox_pending(store.connect(Path(settings.alert_db)))
                if lags == (0, 0, 0) and not any(pending.values()):
                    done, done_at = True, t
            if done and all(s.proc is None for s in stages.values()):
                break
            time.sleep(0.2)
    finally:
        for stage in stages.values():
            if stage.proc is not None and stage.proc.poll() is None:
                stage.proc.send_signal(signal.SIGKILL)
                stage.proc.wait()
        for thread in threads:
            thread.join(timeout=120)
        if "publisher" in box:
            box["publisher"].open.set()
        pub_thread.join(timeout=60)
        if not port_accepts(host, port, timeout=2) or kafka.running() is None:
            kafka.up(lambda _line: None)
        if influx.running() is None:
            influx.up(lambda _line: None)
        target.close()
        gc.collect()  # the unclosed sockets of kafka-python, within this test's filter
    finished = now()
    faults.extend(kill_faults.values())
    faults.sort(key=lambda f: f.at)

    # Every stage stopped by itself (idle exit 0) once the work was done.
    final_rcs = {s.name: s.exits[-1][1] for s in stages.values()}
    exits = sorted((t, s.name, rc, why) for s in stages.values() for t, rc, why in s.exits)
    restarted_on_error = sorted({name for _, name, rc, _ in exits if rc not in (0, -9)})

    def during(t: float) -> str:
        active = [
            f.kind
            for f in faults
            if f.duration and f.at <= t <= f.at + f.duration + (f.recovered_after or 0) + 15
        ]
        return ", ".join(active) or "-"

    # Checks.
    summary = box["summary"]
    expected = expected_predictions(settings, sim_model_dir)
    keys, versions = prediction_keys(settings)
    expected_total = sum(expected.values())
    produced: Counter[str] = Counter(eid for eid, _ in keys.elements())
    dup_preds = sum(n - 1 for n in keys.values() if n > 1)
    first, last = min(w for _, w in keys), max(w for _, w in keys)
    points = _influx_keys(live_services, sorted(expected), min(versions), first, last)
    dup_points = sum(n - 1 for n in points.values() if n > 1)
    missing_points = set(keys) - set(points)
    extra_points = set(points) - set(keys)

    conn = store.connect(Path(settings.alert_db))
    incidents = Counter(r[0] for r in conn.execute("SELECT incident_key FROM tickets"))
    undelivered = conn.execute(
        "SELECT sink, COUNT(*) FROM outbox WHERE delivered_ms IS NULL OR failed != 0 GROUP BY sink"
    ).fetchall()
    conn.close()
    topic_tickets: Counter[str] = Counter()
    for value in read_topic(settings, settings.topic_tickets):
        assert value is not None
        topic_tickets[json.loads(value)["incident_key"]] += 1
    invalid = {k: v for k, v in summary.by_expect.items() if k not in ("valid", "duplicate")}
    dlq = _dlq_reasons(settings, settings.topic_telemetry_dlq)

    checks = [
        ("predictions on topic", expected_total, len(keys), dup_preds),
        ("failure_risk keys in InfluxDB", len(keys), len(set(points) & set(keys)), dup_points),
        (
            "tickets in store (incidents)",
            len(incidents),
            len(incidents),
            sum(n - 1 for n in incidents.values()),
        ),
        (
            "tickets created at webhook",
            len(incidents),
            len(set(target.created) & set(incidents)),
            sum(n - 1 for n in target.created.values()),
        ),
        (
            "tickets on tickets topic",
            len(incidents),
            len(set(topic_tickets) & set(incidents)),
            sum(n - 1 for n in topic_tickets.values()),
        ),
        (
            "malformed in telemetry DLQ",
            sum(invalid.values()),
            sum(min(dlq[k], v) for k, v in invalid.items()),
            sum(max(0, dlq[k] - v) for k, v in invalid.items()),
        ),
    ]
    lines = [
        f"fault suite: seed {seed}, {MACHINES} machines x {STEPS} steps ({summary.messages} "
        f"messages at {RATE:.0f}/s), caught up at {done_at:.0f}s, finished at {finished:.0f}s "
        f"(total {time.monotonic() - t_begin:.0f}s)",
        "",
        f"{'fault':<16} {'target':<34} {'at (s)':>7} {'duration':>9} {'recovered':>10}  note",
    ]
    for f in faults:
        rec = "no" if f.recovered_after is None else f"yes +{f.recovered_after:.1f}s"
        dur = f"{f.duration:.0f}s" if f.duration else "-"
        lines.append(f"{f.kind:<16} {f.target:<34} {f.at:>7.1f} {dur:>9} {rec:>10}  {f.note}")
    lines += [
        "",
        "stage starts: "
        + ", ".join(f"{s.name} {s.starts}" for s in stages.values())
        + f"; restarted after an error exit: {', '.join(restarted_on_error) or 'none'}",
        f"{'exit at':>7}  {'stage':<7} {'rc':>3}  {'during (faults active)':<45} reason",
    ]
    for t, name, rc, why in exits:
        lines.append(f"{t:>6.1f}s  {name:<7} {rc:>3}  {during(t):<45} {why}")
    lines += ["", f"{'check':<32} {'expected':>9} {'found':>9} {'duplicates':>11}"]
    for name, exp, found, dup in checks:
        lines.append(f"{name:<32} {exp:>9} {found:>9} {dup:>11}")
    lines.append(
        f"webhook: {target.requests} requests, {sum(target.accepted.values())} accepted "
        f"(repeats after a timeout answer are idempotent by key); DLQ by reason {dict(dlq)}"
    )
    table = "\n".join(lines)
    out = tmp_path / "fault-table.txt"
    out.write_text(table + "\n")
    print(f"\n{table}\n(table written to {out})")

    # Faults: every one injected and recovered from.
    assert len(faults) == 6, table
    assert all(f.recovered_after is not None for f in faults), table
    assert final_rcs == dict.fromkeys(stages, 0), f"final exits {final_rcs}\n{table}"
    # Predictions: each expected one exactly once, on the topic and in InfluxDB.
    assert len(versions) == 1, versions
    assert dup_preds == 0, f"a prediction was produced twice\n{table}"
    assert dict(produced) == expected, table
    assert not missing_points, f"{len(missing_points)} predictions not in InfluxDB\n{table}"
    assert not extra_points, f"{len(extra_points)} unexpected points in InfluxDB\n{table}"
    assert dup_points == 0, table
    # Tickets: one per incident everywhere, none missing.
    assert incidents, "no ticket at all"
    assert max(incidents.values()) == 1, table
    assert not undelivered, f"outbox rows not delivered: {undelivered}"
    assert set(target.created) == set(incidents), table
    assert max(target.created.values()) == 1, table
    assert set(topic_tickets) == set(incidents), table
    # The tickets topic is an at-least-once outbox sink (docs/alerting.md): a SIGKILL between
    # the broker's ack and marking the row delivered resends it with the same incident key,
    # which consumers deduplicate by; such copies are shown in the table, not failed on.
    # Dead letters: every malformed message, exactly once.
    assert invalid, "the stream should hold malformed messages"
    assert {k: dlq[k] for k in invalid} == invalid, table
