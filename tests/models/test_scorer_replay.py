"""A stop in the middle of a replay neither loses nor doubles a prediction (pure logic).

The scorer's side of ``tests/ingest/test_replay_commit.py``: after a restart each partition
is replayed from the rewind point in its commit metadata up to its committed offset, to
rebuild the machines' windows. A batch closed inside that replay (here: by a stop) must
not commit its own, lower offset, or the next start would score those steps again.

Fake Kafka, a tiny real model.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from kafka import TopicPartition

from models.scorer import ScorerConfig, ScorerService
from models.servable import Servable, load_servable
from pipeline.predictions import decode_prediction
from tests.fake_kafka import FakeConsumer, TransactionalProducer
from tests.models.tiny import WINDOW, feature_record, make_artifact

pytestmark = pytest.mark.slow

TP = TopicPartition("features", 0)
MACHINES, STEPS = 3, 30


def _run(
    consumer: FakeConsumer,
    producer: TransactionalProducer,
    servable: Servable,
    chunk: int,
    polls: int | None,
) -> None:
    """One process: a fresh scorer (no windows) for ``polls`` polls, or until drained."""
    stop = threading.Event()
    consumer.chunk, consumer.polls, consumer.empty_polls = chunk, 0, 0

    def after_poll(c: FakeConsumer) -> None:
        if (polls is not None and c.polls >= polls) or c.empty_polls >= 3:
            stop.set()  # the loop then commits what it holds, as on SIGTERM

    consumer.on_poll = after_poll
    config = ScorerConfig(max_batch=64, max_wait_ms=3_000, drained_ms=20, poll_timeout_ms=0)
    ScorerService(consumer, producer, servable, WINDOW, config).run(stop, idle_exit_s=None)


def _scored(producer: TransactionalProducer) -> list[tuple[str, int]]:
    out = []
    for value in producer.published:
        p, reason = decode_prediction(value)
        assert p is not None, reason
        out.append((p.equipment_id, p.window_end))
    return out


def test_a_stop_inside_a_replay_keeps_the_commit_and_scores_each_step_once(
    tmp_path: Path,
) -> None:
    servable = load_servable(make_artifact(tmp_path / "m", seed=1), WINDOW, "cpu:0", 64)
    values = [feature_record(f"m{i}", s) for s in range(STEPS) for i in range(MACHINES)]

    reference = FakeConsumer(TP, values)
    uninterrupted = TransactionalProducer(reference, "predictions")
    _run(reference, uninterrupted, servable, chunk=10, polls=None)
    expected = _scored(uninterrupted)
    assert len(expected) == len(set(expected)) > MACHINES * 10

    consumer = FakeConsumer(TP, values)
    producer = TransactionalProducer(consumer, "predictions")
    _run(consumer, producer, servable, chunk=10, polls=5)  # the 1st poll goes to the rewind
    first = consumer.committed_offset
    assert first == 40
    # Restarted with small polls: the first is dropped for the rewind, the next two replay
    # from the rewind point; stopped there, before the replay reaches the commit.
    _run(consumer, producer, servable, chunk=3, polls=3)
    assert consumer.committed_offset == first, "a batch inside the replay moved the commit"
    _run(consumer, producer, servable, chunk=5, polls=None)  # restarted again, to the end

    assert producer.commits == sorted(producer.commits), "the commit went backwards"
    scored = _scored(producer)
    doubled = sorted({s for s in scored if scored.count(s) > 1})
    assert not doubled, f"steps scored twice: {doubled}"
    assert sorted(scored) == sorted(expected)  # none lost either
