"""When the scorer closes a batch (pure logic, fake Kafka, a tiny real model).

A burst of feature records smaller than the maximum batch, then silence: the batch must be
scored once the input is drained (``drained_ms`` without a record while the model is
idle), not after the maximum wait. The fake consumer's polls take their timeout in wall
time when there is nothing to return, as a real consumer's do. And the lag gauge after an
empty poll that skipped an aborted transaction's records (0, not the count at the commit).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import OffsetAndMetadata, TopicPartition

from models.scorer import ScorerConfig, ScorerService
from models.servable import load_servable
from tests.fake_kafka import FakeConsumer, FakeFuture
from tests.models.tiny import MIN_STEPS, WINDOW, feature_record, make_artifact

pytestmark = pytest.mark.slow

TP = TopicPartition("features", 0)


class _Producer:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.sent: list[bytes] = []
        self.commits: list[tuple[float, OffsetAndMetadata]] = []

    def init_transactions(self) -> None:
        pass

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def begin_transaction(self) -> None:
        pass

    def send(self, topic: str, key: Any = None, value: Any = None, **_: Any) -> FakeFuture:
        if topic == "predictions":
            self.sent.append(value)
        return FakeFuture()

    def flush(self) -> None:
        pass

    def send_offsets_to_transaction(self, offsets: Any, group: Any) -> None:
        self.commits.append((time.monotonic(), offsets[TP]))

    def commit_transaction(self) -> None:
        self.stop.set()

    def abort_transaction(self) -> None:
        pass


@pytest.mark.parametrize("drained_ms", [20, 10_000])
def test_a_burst_smaller_than_a_batch_is_scored_once_the_input_is_drained(
    tmp_path: Path, drained_ms: int
) -> None:
    machines, steps = 5, MIN_STEPS + 2
    values = [feature_record(f"m{i}", s) for s in range(steps) for i in range(machines)]
    consumer = FakeConsumer(TP, values, sleep_when_empty=True)
    stop = threading.Event()
    producer = _Producer(stop)
    servable = load_servable(make_artifact(tmp_path / "m", seed=1), WINDOW, "cpu:0", 64)
    max_wait_ms = 3_000
    config = ScorerConfig(max_batch=64, max_wait_ms=max_wait_ms, drained_ms=drained_ms)
    service = ScorerService(consumer, producer, servable, WINDOW, config)
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive()
    assert consumer.drained_at is not None
    # every window with MIN_STEPS steps got its prediction, in one batch
    assert len(producer.sent) == machines * (steps - MIN_STEPS + 1)
    first_commit, offsets = producer.commits[0]
    assert offsets.offset == len(values)
    waited = first_commit - consumer.drained_at
    if drained_ms < max_wait_ms:
        assert waited < 1.0, f"scored {waited:.2f}s after the input was drained"
    else:  # drained_ms beyond max_wait_ms: the batch waits for max_wait_ms as before
        assert waited >= max_wait_ms / 1000 - 0.5


class _AbortsAfterCommit(_Producer):
    """At its commit, 3 records of another producer's aborted transaction follow the log."""

    def __init__(self, stop: threading.Event, consumer: FakeConsumer) -> None:
        super().__init__(stop)
        self.consumer = consumer

    def commit_transaction(self) -> None:
        self.consumer.aborted_tail = 3


def test_the_lag_gauge_follows_an_empty_poll_past_aborted_records(tmp_path: Path) -> None:
    values = [feature_record("m0", s) for s in range(MIN_STEPS + 2)]
    stop = threading.Event()
    consumer = FakeConsumer(
        TP, values, on_poll=lambda c: c.aborted_tail and c.empty_polls >= 3 and stop.set()
    )
    producer = _AbortsAfterCommit(stop, consumer)
    servable = load_servable(make_artifact(tmp_path / "m", seed=1), WINDOW, "cpu:0", 64)
    config = ScorerConfig(max_batch=64, max_wait_ms=3_000, drained_ms=20)
    service = ScorerService(consumer, producer, servable, WINDOW, config)
    service.run(stop, idle_exit_s=None)
    assert consumer.offset == len(values) + 3  # an empty poll moved past the aborted records
    assert producer.commits  # the batch committed while the 3 records were still ahead
    assert service.metrics.lag == 0  # not 3, the count at the commit


def test_a_step_without_readings_is_kept_in_the_window_but_not_scored(tmp_path: Path) -> None:
    from pipeline.featurerecords import encode_feature
    from pipeline.predictions import decode_prediction
    from tests.models.tiny import machine_values

    def record(step: int, silent: bool) -> bytes:
        values = machine_values("m0", step)
        if silent:  # no reading: every sensor's mean missing (this config fills nothing)
            values[0::4] = np.nan
        else:
            values[0::4] = 1.0
        start = step * WINDOW.step_ms
        return encode_feature("m0", start, start + WINDOW.step_ms, WINDOW.fingerprint(), values)

    quiet = {MIN_STEPS + 1, MIN_STEPS + 2}  # a machine down for two steps, then back
    steps = range(MIN_STEPS + 5)
    values = [record(s, s in quiet) for s in steps]
    stop = threading.Event()
    consumer = FakeConsumer(TP, values, on_poll=lambda c: c.empty_polls >= 3 and stop.set())
    producer = _Producer(stop)
    producer.commit_transaction = lambda: None  # keep polling until the input is drained
    servable = load_servable(make_artifact(tmp_path / "m", seed=1), WINDOW, "cpu:0", 64)
    config = ScorerConfig(max_batch=64, max_wait_ms=3_000, drained_ms=20)
    service = ScorerService(consumer, producer, servable, WINDOW, config)
    service.run(stop)
    ends = sorted(decode_prediction(v)[0].window_end for v in producer.sent)
    expected = [(s + 1) * WINDOW.step_ms for s in steps if s >= MIN_STEPS - 1 and s not in quiet]
    assert ends == expected
    assert service.metrics.silent == 2
    assert service.metrics.warming == MIN_STEPS - 1
