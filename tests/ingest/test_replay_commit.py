"""A crash in the middle of a replay neither loses nor doubles a feature step (pure logic).

After a restart, each partition is replayed from the rewind point in its commit metadata up
to its committed offset, to rebuild the open windows. The outputs of those records were
published before. A batch that ends inside the replay must leave the partition's commit as
it is: committing the batch's own, lower offset would make the next restart take records
whose steps were already published for new ones. In the SIGKILL test on a real broker
(``test_features_integration.py``) that showed as "step emitted twice".

Fake Kafka: a transactional producer whose commits become the consumer's committed offset
and metadata, and polls of a few records each, so that a replay spans several batches.
"""

from __future__ import annotations

import threading

from kafka import TopicPartition

from features.config import WindowConfig
from ingest.contract import Telemetry, encode
from ingest.featurestage import FeatureStage
from ingest.service import IngestConfig, IngestService
from pipeline.featurerecords import decode_feature
from tests.fake_kafka import FakeConsumer, TransactionalProducer

NOW_MS = 1_795_000_000_000
TP = TopicPartition("telemetry", 0)
CONFIG = WindowConfig(
    sensors=("t",), step_ms=10_000, grace_ms=2_000, window_steps=3, aggregates=("mean",), derived=()
)
READINGS = 120  # one a second, two machines: 12 steps each


def _log() -> list[bytes]:
    start = NOW_MS - 600_000
    return [
        encode(Telemetry(machine, start + i * 1000, {"t": float(i % 7)}))
        for i in range(READINGS)
        for machine in ("a", "b")
    ]


def _run(
    consumer: FakeConsumer, producer: TransactionalProducer, chunk: int, polls: int | None
) -> None:
    """One process: a fresh service (no state) for ``polls`` polls, or until drained."""
    stop = threading.Event()
    consumer.chunk, consumer.polls, consumer.empty_polls = chunk, 0, 0

    def after_poll(c: FakeConsumer) -> None:
        if (polls is not None and c.polls >= polls) or c.empty_polls >= 2:
            stop.set()  # that poll's batch is still processed: a kill right after its commit

    consumer.on_poll = after_poll
    service = IngestService(
        consumer,
        producer,
        [],
        IngestConfig(transactional=True, poll_timeout_ms=0, lateness_ms=2_000),
        clock=lambda: NOW_MS / 1000,
        features=FeatureStage(CONFIG),
    )
    service.run(stop)


def _steps(producer: TransactionalProducer) -> list[tuple[str, int]]:
    steps = []
    for value in producer.published:
        record, reason = decode_feature(value)
        assert record is not None, reason
        steps.append((record.equipment_id, record.step_start))
    return steps


def test_a_crash_inside_a_replay_keeps_the_commit_and_emits_each_step_once() -> None:
    reference = FakeConsumer(TP, _log())
    uninterrupted = TransactionalProducer(reference, "features")
    _run(reference, uninterrupted, chunk=16, polls=None)
    expected = _steps(uninterrupted)
    assert len(expected) == len(set(expected)) > 2 * 8

    consumer = FakeConsumer(TP, _log())
    producer = TransactionalProducer(consumer, "features")
    _run(consumer, producer, chunk=16, polls=4)  # the 1st poll goes to the rewind
    first = consumer.committed_offset
    assert first == 3 * 16  # 3 batches committed, then killed
    # Restarted with small polls: the first is dropped for the rewind, the next ones replay
    # from the rewind point; killed after the second replay batch, before the mark.
    _run(consumer, producer, chunk=4, polls=3)
    assert consumer.committed_offset == first, "a batch inside the replay moved the commit"
    _run(consumer, producer, chunk=5, polls=None)  # restarted again, to the end

    assert producer.commits == sorted(producer.commits), "the commit went backwards"
    steps = _steps(producer)
    doubled = sorted({s for s in steps if steps.count(s) > 1})
    assert not doubled, f"steps emitted twice: {doubled}"
    assert sorted(steps) == sorted(expected)  # none lost either
