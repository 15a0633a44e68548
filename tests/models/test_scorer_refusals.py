"""What Kafka or a downstream stage would refuse never stops the scorer (fake Kafka, tiny model).

Feature records that the predictions could not carry downstream (an ``equipment_id``
outside the telemetry contract, a time past InfluxDB's (2262), values beyond float32 once
normalized) are dead letters. A prediction that the broker refuses for its size becomes a
dead letter of the feature record that closed its window, after one rebuild; one over the
producer's own limit at once. A refused transaction is retried after a pause that grows
with each refusal in a row, up to ``backoff_max_s``, and rebuilt from the committed offsets:
the loop neither spins nor exits, and no prediction is lost or doubled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

import models.scorer
import pipeline.runtime
from ingest.contract import MAX_TS_MS
from models.scorer import ScorerConfig, ScorerService
from models.servable import Servable, load_servable
from pipeline.deadletter import headers_of
from pipeline.featurerecords import encode_feature
from pipeline.predictions import Prediction, decode_prediction
from tests.fake_kafka import FakeConsumer
from tests.models.tiny import MIN_STEPS, WINDOW, feature_record, machine_values, make_artifact

pytestmark = pytest.mark.slow

TP = TopicPartition("features", 0)
MACHINES, STEPS = 3, MIN_STEPS + 5
Key = tuple[str, int]


class _Future:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc

    def add_errback(self, fn: Callable[[BaseException], object]) -> _Future:
        if self.exc is not None:  # kafka-python calls it at once on a failed future
            fn(self.exc)
        return self


class _Broker:
    """A transactional producer: a commit publishes and commits offsets, an abort drops.

    Args:
        consumer: whose committed offset the commits set.
        refuse: for a prediction, ``"sync"`` (over the producer's max_request_size: send
            raises), ``"async"`` (the broker refuses it: its send fails) or None.
        refuse_commits: how many commits fail (as Kafka does while the coordinator is away).
    """

    def __init__(
        self,
        consumer: FakeConsumer,
        refuse: Callable[[Prediction], str | None] = lambda p: None,
        refuse_commits: int = 0,
    ) -> None:
        self.consumer, self.refuse, self.refuse_commits = consumer, refuse, refuse_commits
        self.pending: list[tuple[str, bytes, Any]] = []
        self.published: list[bytes] = []
        self.dead: list[tuple[bytes, dict[str, str]]] = []
        self.offsets: Any = None
        self.aborts = 0

    def init_transactions(self) -> None:
        pass

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def begin_transaction(self) -> None:
        self.pending, self.offsets = [], None

    def send(self, topic: str, key: Any = None, value: Any = None, **kw: Any) -> _Future:
        if topic == "predictions":
            p, reason = decode_prediction(value)
            assert p is not None, reason  # the scorer publishes only what alerting decodes
            how = self.refuse(p)
            if how == "sync":
                raise MessageSizeTooLargeError("The message is 2000000 bytes when serialized")
            if how == "async":
                return _Future(MessageSizeTooLargeError("MESSAGE_TOO_LARGE"))
        self.pending.append((topic, value, kw.get("headers")))
        return _Future(None)

    def flush(self) -> None:
        pass

    def send_offsets_to_transaction(self, offsets: Any, group: Any) -> None:
        self.offsets = offsets

    def commit_transaction(self) -> None:
        if self.refuse_commits:
            self.refuse_commits -= 1
            raise KafkaTimeoutError("the transaction coordinator did not answer")
        for topic, value, headers in self.pending:
            if topic == "predictions":
                self.published.append(value)
            else:
                self.dead.append((value, headers_of(headers)))
        self.consumer.committed_offset = self.offsets[TP].offset
        self.consumer.committed_metadata = self.offsets[TP].metadata

    def abort_transaction(self) -> None:
        self.aborts += 1
        self.pending = []

    def scored(self) -> list[Key]:
        out = []
        for value in self.published:
            p, _ = decode_prediction(value)
            assert p is not None
            out.append((p.equipment_id, p.window_end))
        return out


@pytest.fixture(scope="module")
def servable(tmp_path_factory: pytest.TempPathFactory) -> Servable:
    path = make_artifact(tmp_path_factory.mktemp("m") / "m", seed=1)
    return load_servable(path, WINDOW, "cpu:0", 64)


def _stream(extra: dict[int, bytes] | None = None) -> list[bytes]:
    """MACHINES machines x STEPS steps, machine-major per step; ``extra`` replaces offsets."""
    values = [feature_record(f"m{i}", s) for s in range(STEPS) for i in range(MACHINES)]
    for offset, value in (extra or {}).items():
        values[offset] = value
    return values


def _done(stop: threading.Event) -> Callable[[FakeConsumer], object]:
    """Stop once everything is committed and the input drained (or after 60 s)."""
    deadline = time.monotonic() + 60

    def check(c: FakeConsumer) -> None:
        drained = c.committed_offset == len(c.log) and c.empty_polls >= 3
        if drained or time.monotonic() > deadline:
            stop.set()

    return check


def _run(
    servable: Servable, values: list[bytes], chunk: int = 1 << 30, **broker: Any
) -> tuple[_Broker, ScorerService, FakeConsumer]:
    stop = threading.Event()
    consumer = FakeConsumer(TP, values, chunk=chunk, on_poll=_done(stop))
    producer = _Broker(consumer, **broker)
    config = ScorerConfig(max_batch=64, max_wait_ms=3_000, drained_ms=20)
    service = ScorerService(consumer, producer, servable, WINDOW, config)
    service.run(stop, idle_exit_s=None)
    return producer, service, consumer


def _record(eid: str, step: int, start: int | None = None, big: bool = False) -> bytes:
    values = machine_values(eid, step)
    if big:
        values[1] = 1e300  # a finite float64 that no float32 holds once normalized
    s = step * WINDOW.step_ms if start is None else start
    return encode_feature(eid, s, s + WINDOW.step_ms, WINDOW.fingerprint(), values)


def test_feature_records_that_downstream_could_not_carry_are_dead_letters(
    servable: Servable,
) -> None:
    reference = set(_run(servable, _stream())[0].scored())
    bad = {
        3: _record("m 1", 1),  # a space: InfluxDB tags and the contract refuse it
        4: _record("m2\n", 1),  # a final newline (a `$` would have let it through)
        6: _record("m0", 2, start=MAX_TS_MS),  # window_end past MAX_TS_MS (2262-04-11)
        7: _record("m1", 2, big=True),
    }
    producer, _service, consumer = _run(servable, _stream(bad))
    reasons = {h["source.offset"]: (h["reason"], h["stage"]) for _v, h in producer.dead}
    assert reasons == {
        "3": ("not_a_feature_record", "score"),
        "4": ("not_a_feature_record", "score"),
        "6": ("not_a_feature_record", "score"),
        "7": ("value_out_of_range", "score"),
    }
    details = {h["source.offset"]: h["detail"] for _v, h in producer.dead}
    assert "field 'equipment_id': value 'm 1' is not valid" in details["3"]
    assert "beyond float32" in details["7"]
    assert consumer.committed_offset == MACHINES * STEPS
    scored = producer.scored()
    assert len(scored) == len(set(scored))
    assert set(scored) <= reference  # the other machines' steps are scored as before
    assert {eid for eid, _ in scored} == {"m0", "m1", "m2"}


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (2 * WINDOW.step_ms, 4 * WINDOW.step_ms),  # two steps long: ends where step 3 ends
        (2 * WINDOW.step_ms, 2 * WINDOW.step_ms + 1),
        (2 * WINDOW.step_ms + 1, 3 * WINDOW.step_ms + 1),  # not on the rules' step grid
    ],
)
def test_a_record_that_is_not_one_step_of_the_rules_is_a_dead_letter(
    servable: Servable, start: int, end: int
) -> None:
    # Found by tests/test_fuzz_stages.py: the scorer took a record of any length, whose
    # window_end could then be that of the machine's next step, which made two predictions
    # of one (equipment_id, window_end).
    bad = encode_feature("m0", start, end, WINDOW.fingerprint(), machine_values("m0", 2))
    producer, _service, consumer = _run(servable, _stream({2 * MACHINES: bad}))
    ((_value, h),) = producer.dead
    assert (h["reason"], h["source.offset"]) == ("not_a_feature_record", str(2 * MACHINES))
    assert "expected one step of the feature rules" in h["detail"]
    scored = producer.scored()
    assert len(scored) == len(set(scored))
    assert consumer.committed_offset == MACHINES * STEPS


def test_a_prediction_the_broker_refuses_is_dead_lettered_after_one_rebuild(
    servable: Servable,
) -> None:
    reference = _run(servable, _stream())[0].scored()
    victim: Key = ("m1", 6 * WINDOW.step_ms)  # closed by m1's step 5: offset 5 * 3 + 1
    producer, service, consumer = _run(
        servable,
        _stream(),
        refuse=lambda p: "async" if (p.equipment_id, p.window_end) == victim else None,
    )
    assert producer.aborts == 1  # one refused transaction, then the rebuilt batch commits
    ((value, h),) = producer.dead
    assert value == _stream()[16]  # the feature record, byte for byte
    assert (h["reason"], h["stage"], h["source.offset"]) == ("prediction_refused", "score", "16")
    assert "MessageSizeTooLargeError" in h["detail"]
    assert sorted(producer.scored()) == sorted(k for k in reference if k != victim)
    assert consumer.committed_offset == MACHINES * STEPS
    assert dict(service.metrics.dead) == {"prediction_refused": 1}
    assert not service.runtime.refused  # forgotten once its letter committed


def test_a_prediction_over_the_producer_limit_is_dead_lettered_at_once(
    servable: Servable,
) -> None:
    reference = _run(servable, _stream())[0].scored()
    victim: Key = ("m2", 4 * WINDOW.step_ms)
    producer, _service, consumer = _run(
        servable,
        _stream(),
        refuse=lambda p: "sync" if (p.equipment_id, p.window_end) == victim else None,
    )
    assert producer.aborts == 0
    assert [h["reason"] for _v, h in producer.dead] == ["prediction_refused"]
    assert sorted(producer.scored()) == sorted(k for k in reference if k != victim)
    assert consumer.committed_offset == MACHINES * STEPS


def test_refused_transactions_back_off_growing_and_rebuild_without_loss(
    servable: Servable, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _run(servable, _stream(), chunk=6)[0].scored()
    pauses: list[float] = []
    monkeypatch.setattr(pipeline.runtime, "pause_for", lambda consumer, s: pauses.append(s))
    stop = threading.Event()
    consumer = FakeConsumer(TP, _stream(), chunk=6, on_poll=_done(stop))
    producer = _Broker(consumer, refuse_commits=5)
    config = ScorerConfig(max_batch=64, max_wait_ms=3_000, drained_ms=20, backoff_max_s=2.0)
    service = ScorerService(consumer, producer, servable, WINDOW, config)
    service.run(stop, idle_exit_s=None)
    assert pauses == [0.5, 1.0, 2.0, 2.0, 2.0]  # growing, bounded: no hot loop
    assert producer.aborts == 5
    assert service.runtime.failures == 0  # reset by the commit that went through
    assert sorted(producer.scored()) == sorted(reference)  # none lost, none doubled
    assert consumer.committed_offset == MACHINES * STEPS


def test_a_prediction_without_a_finite_probability_is_dead_lettered(
    servable: Servable, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = models.scorer.score

    def nan_for_m0(*args: Any) -> list[Prediction]:
        preds = real(*args)
        return [
            Prediction(**{**p.__dict__, "probability": float("nan")})
            if p.equipment_id == "m0"
            else p
            for p in preds
        ]

    monkeypatch.setattr(models.scorer, "score", nan_for_m0)
    producer, _service, _consumer = _run(servable, _stream())
    assert {eid for eid, _ in producer.scored()} == {"m1", "m2"}
    letters = [h for _v, h in producer.dead]
    assert {h["reason"] for h in letters} == {"prediction_refused"}
    assert len(letters) == STEPS - MIN_STEPS + 1
    assert "no finite probability (nan)" in letters[0]["detail"]


def test_a_fenced_producer_still_stops_the_scorer(servable: Servable) -> None:
    from kafka.errors import ProducerFencedError

    class _Fenced(_Broker):
        def commit_transaction(self) -> None:
            raise ProducerFencedError("fenced")

    stop = threading.Event()
    consumer = FakeConsumer(TP, _stream(), on_poll=_done(stop))
    config = ScorerConfig(max_batch=64, max_wait_ms=3_000, drained_ms=20)
    service = ScorerService(consumer, _Fenced(consumer), servable, WINDOW, config)
    with pytest.raises(
        models.scorer.ScorerKafkaError, match=r"another scorer instance .*PLANTWATCH_INSTANCE_ID"
    ):
        service.run(stop, idle_exit_s=None)
