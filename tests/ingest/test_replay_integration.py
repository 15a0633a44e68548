"""`plantwatch replay cmapss` as a subprocess against the real broker, read back with kafka-python."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ingest.cmapss import READINGS, load_cmapss
from ingest.contract import validate
from ingest.events import decode_event
from plantwatch.connections import kafka_config
from plantwatch.settings import Settings
from tests.conftest import CMAPSS

pytestmark = pytest.mark.integration

CYCLE_MS = 10 * 60_000
_MAIN = "from plantwatch.cli import main; main()"


def _replay(
    path: Path, topics: tuple[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PLANTWATCH_TOPIC_TELEMETRY=topics[0], PLANTWATCH_TOPIC_EVENTS=topics[1])
    return subprocess.run(
        [sys.executable, "-c", _MAIN, "replay", "cmapss", str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _hand_made(tmp_path: Path, name: str, lengths: dict[int, int]) -> Path:
    rows = []
    for unit, cycles in lengths.items():
        for cycle in range(1, cycles + 1):
            values = [f"{unit + cycle / 100 + i / 10_000:.4f}" for i in range(24)]
            rows.append(" ".join([str(unit), str(cycle), *values]) + "  ")
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def topics(live_services: Settings, unique: str) -> Iterator[tuple[str, str]]:
    """Fresh telemetry and events topics (3 partitions each), deleted afterwards."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    names = (f"test-replay-telemetry-{unique}", f"test-replay-events-{unique}")
    admin = KafkaAdminClient(**kafka_config(live_services))
    admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1) for n in names])
    try:
        yield names
    finally:
        admin.delete_topics(list(names))
        admin.close()


def _consume_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end offsets, in partition order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_config(settings, enable_auto_commit=False))
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_replay_publishes_every_cycle_once_and_failures(
    live_services: Settings, topics: tuple[str, str], tmp_path: Path
) -> None:
    if CMAPSS.exists():
        path, engines, units = CMAPSS / "train_FD001.txt", "1,2,5-7", [1, 2, 5, 6, 7]
    else:
        path = _hand_made(tmp_path, "train_tiny.txt", {1: 6, 2: 9, 3: 4})
        engines, units = "1-3", [1, 2, 3]
    source = load_cmapss(path)
    source = source[source["unit"].isin(units)].set_index(["unit", "cycle"])
    before = int(time.time() * 1000)
    result = _replay(path, topics, "--engines", engines, "--cycle-period", "10m")
    after = int(time.time() * 1000)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert f"replayed {len(units)} engines: {len(source)} cycles in {len(source)} messages" in (
        result.stdout
    )
    assert f"{len(units)} failures" in result.stdout

    last = source.reset_index().groupby("unit")["cycle"].max()
    events = _consume_all(live_services, topics[1])
    assert len(events) == len(units)
    failures = {}
    for record in events:
        event = decode_event(record.value)
        assert record.key == event.equipment_id.encode()
        assert record.timestamp == event.ts_ms
        assert (event.kind, event.mode, event.source) == ("failure", "cmapss", "cmapss")
        failures[event.equipment_id] = event.ts_ms
    assert sorted(failures) == [f"engine-{u:03d}" for u in units]
    # Default start: the last cycle lands on the multiple of the cycle period at or before
    # the time of the run (so that cycles align with feature steps of that length).
    period = 600_000
    assert before // period * period <= max(failures.values()) <= after
    assert max(failures.values()) % period == 0
    start = max(failures.values()) - (int(last.max()) - 1) * CYCLE_MS
    for unit, cycles in last.items():
        assert failures[f"engine-{unit:03d}"] == start + (cycles - 1) * CYCLE_MS

    now_ms = int(time.time() * 1000)
    seen: dict[tuple[int, int], int] = {}
    last_ts: dict[bytes, int] = {}
    for record in _consume_all(live_services, topics[0]):
        samples, rejection = validate(record.value, now_ms=now_ms)
        assert rejection is None, rejection
        assert len(samples) == 1
        sample = samples[0]
        assert record.key == sample.equipment_id.encode()
        assert record.timestamp == sample.ts_ms
        assert sample.asset_type == "turbofan"
        unit = int(sample.equipment_id.removeprefix("engine-"))
        cycle = (sample.ts_ms - start) // CYCLE_MS + 1
        assert sample.ts_ms == start + (cycle - 1) * CYCLE_MS
        assert sample.seq == cycle
        expected = source.loc[(unit, cycle)]
        assert sample.readings == {name: float(expected[name]) for name in READINGS}
        seen[(unit, cycle)] = seen.get((unit, cycle), 0) + 1
        # One key lives on one partition, so its samples arrive in event-time order.
        assert sample.ts_ms > last_ts.get(record.key, -1)
        last_ts[record.key] = sample.ts_ms
    assert set(seen) == set(source.index)
    assert set(seen.values()) == {1}


def test_paced_batched_replay_of_a_test_file_has_no_failures(
    live_services: Settings, topics: tuple[str, str], tmp_path: Path
) -> None:
    path = _hand_made(tmp_path, "test_tiny.txt", {1: 7, 2: 3})
    start = int(time.time() * 1000) - 6 * CYCLE_MS
    result = _replay(
        path, topics, "--speed", "1200", "--batch-size", "3", "--start", str(start)
    )  # 1200x: 0.5 s per 10-minute cycle, 3 s for 6 cycle steps
    assert result.returncode == 0, result.stderr
    assert "0 failures" in result.stdout
    seconds = float(result.stdout.split(" s (")[0].rsplit(", ", 1)[1])
    assert seconds >= 2.9
    assert _consume_all(live_services, topics[1]) == []

    source = load_cmapss(path).set_index(["unit", "cycle"])
    got: list[tuple[int, int]] = []
    for record in _consume_all(live_services, topics[0]):
        samples, rejection = validate(record.value, now_ms=int(time.time() * 1000))
        assert rejection is None, rejection
        assert 1 <= len(samples) <= 3
        assert record.timestamp == samples[-1].ts_ms
        cycles = [s.seq for s in samples]
        assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))
        for sample in samples:
            unit = int(sample.equipment_id.removeprefix("engine-"))
            assert sample.ts_ms == start + (sample.seq - 1) * CYCLE_MS
            expected = source.loc[(unit, sample.seq)]
            assert sample.readings == {name: float(expected[name]) for name in READINGS}
            got.append((unit, int(sample.seq or 0)))
    assert sorted(got) == sorted(source.index)
    assert len(pd.Index(got).unique()) == len(got)


def test_malformed_file_exits_2_with_one_line(
    live_services: Settings, topics: tuple[str, str], tmp_path: Path
) -> None:
    path = _hand_made(tmp_path, "train_bad.txt", {1: 3})
    text = path.read_text().splitlines()
    text[1] = text[1].replace("1.0201", "1.02O1")
    path.write_text("\n".join(text) + "\n")
    result = _replay(path, topics)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("plantwatch: error: ")
    assert f"{path}, line 2, column 'setting_2': value '1.02O1' is not a number" in result.stderr
    assert _consume_all(live_services, topics[0]) == []
