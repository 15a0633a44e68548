"""Shared fixtures.

Integration tests (marked ``integration``) talk to the real Kafka broker and InfluxDB
server that the test command (`make test`) starts on loopback; they fail, never skip,
when those are not running. Each test uses its own topics or measurement tags.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plantwatch.settings import Settings, load_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CMAPSS = SHARED / "data" / "cmapss"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings the test command exported (PLANTWATCH_* variables)."""
    return load_settings()


@pytest.fixture(scope="session")
def live_services(settings: Settings) -> Settings:
    """The running Kafka and InfluxDB; fails with the way out when they are not up."""
    from devservices.process import port_accepts

    host, port = settings.kafka_hosts[0]
    influx = settings.influx_url.split("//", 1)[1]
    ihost, _, iport = influx.partition(":")
    missing = []
    if not port_accepts(host, port, timeout=2):
        missing.append(f"Kafka at {settings.kafka_bootstrap_servers}")
    if not port_accepts(ihost, int(iport or 8086), timeout=2):
        missing.append(f"InfluxDB at {settings.influx_url}")
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not running: run the tests with `make test`, "
            "which starts them (or `plantwatch services up` with the same PLANTWATCH_* settings)"
        )
    return settings


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and tag names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_topic(live_services: Settings) -> Iterator[Callable[[str], str]]:
    """``make_topic(name)``: create a 3-partition topic now, delete it after the test."""
    from plantwatch.topics import ensure_topics

    created: list[str] = []

    def make(name: str) -> str:
        ensure_topics(live_services, {name: 3})
        created.append(name)
        return name

    yield make
    if created:
        from kafka import KafkaAdminClient

        from plantwatch.connections import kafka_config

        admin = KafkaAdminClient(**kafka_config(live_services))
        admin.delete_topics(created, raise_errors=False)
        admin.close()


@pytest.fixture
def topic(make_topic: Callable[[str], str], unique: str) -> str:
    """A fresh 3-partition topic, deleted afterwards."""
    return make_topic(f"test-{unique}")


def group_lag(settings: Settings, group: str, topic: str) -> int:
    """Records of ``topic`` that consumer group ``group`` has not committed yet."""
    from kafka import KafkaConsumer, TopicPartition

    from plantwatch.connections import kafka_config

    consumer = KafkaConsumer(**kafka_config(settings, group_id=group, enable_auto_commit=False))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = consumer.end_offsets(tps)
        return sum(max(0, ends[tp] - (consumer.committed(tp) or 0)) for tp in tps)
    finally:
        consumer.close()


def wait_caught_up(settings: Settings, group: str, topic: str, timeout: float = 180) -> None:
    """Wait until ``group`` has committed everything in ``topic``."""
    import time

    deadline = time.monotonic() + timeout
    lag = -1
    while time.monotonic() < deadline:
        lag = group_lag(settings, group, topic)
        if lag == 0:
            return
        time.sleep(0.5)
    pytest.fail(f"group {group} still {lag} records behind on {topic} after {timeout}s")


class CommitWatch(threading.Thread):
    """Samples a group's committed offsets every 10 ms; keeps any that moved back.

    A commit must never go below one made before: the records between would be taken
    for new ones after the next crash (the duplicates of the bug fixed on 2026-11-30).
    Use: ``start()``, the work, then ``stop()``, which asserts.
    """

    def __init__(self, settings: Settings, group: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.settings, self.group, self.topic = settings, group, topic
        self.done = threading.Event()
        self.backwards: list[tuple[int, int, int]] = []
        self.samples = 0

    def run(self) -> None:
        import time

        from kafka import KafkaConsumer, TopicPartition

        from plantwatch.connections import kafka_config

        consumer = KafkaConsumer(**kafka_config(self.settings, group_id=self.group))
        parts = [TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic)]
        last: dict[int, int] = {}
        while not self.done.is_set():
            for tp in parts:
                offset = consumer.committed(tp)
                if offset is not None and offset < last.get(tp.partition, offset):
                    self.backwards.append((tp.partition, last[tp.partition], offset))
                if offset is not None:
                    last[tp.partition] = offset
            self.samples += 1
            time.sleep(0.01)
        consumer.close()

    def stop(self) -> None:
        """Stop sampling; fails the test if a commit moved back (or nothing was sampled)."""
        self.done.set()
        self.join()
        assert self.samples > 10, "the watch sampled nothing"
        assert not self.backwards, f"commits moved back (partition, from, to): {self.backwards}"


@pytest.fixture
def caught_up() -> Callable[..., None]:
    """``caught_up(settings, group, topic, timeout=180)``: wait until the group committed all."""
    return wait_caught_up


def ingest_until_caught_up(
    settings: Settings, env: dict[str, str], log: Path, timeout: float = 180
) -> None:
    """Run `plantwatch ingest` (with ``env``) until its group has committed its whole topic,
    then stop it with SIGTERM; fails unless it exits 0 (a clean stop commits)."""
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-c", "from plantwatch.cli import main; main()", "ingest"]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        while "ingest: assigned" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        wait_caught_up(
            settings, env["PLANTWATCH_INGEST_GROUP"], env["PLANTWATCH_TOPIC_TELEMETRY"], timeout
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"ingest exited {proc.returncode}:\n{log.read_text()[-3000:]}")


@pytest.fixture
def run_ingest() -> Callable[..., None]:
    """``run_ingest(settings, env, log_path)``: ingest until caught up, then a clean stop."""
    return ingest_until_caught_up


@pytest.fixture(scope="session")
def sim_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir with one model trained on simulated history (seed 101), trained once
    per session for the whole-pipeline tests (`test_end_to_end.py`, `test_faults.py`)."""
    from tests.pipeline_helpers import train_sim_model

    return train_sim_model(tmp_path_factory.mktemp("sim-model"))
