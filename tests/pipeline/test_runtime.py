"""The stage runtime alone (pipeline.runtime): no stage, no broker, a fake clock.

A fake consumer of several partitions (:class:`tests.fake_kafka.GroupConsumer`) and a
recording producer (:class:`tests.fake_kafka.RecordingProducer`) log their calls to one
list, so each test checks what the runtime asks of Kafka and in which order; the pause
after a refused batch is recorded instead of waited (``pipeline.runtime.pause_for``), and
the loop runs on a clock that the consumer's polls move. The same runtime under a real
broker (SIGKILL, outages) is tested through the stages in ``tests/test_faults.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerFencedError,
)

import pipeline.runtime
from pipeline.errors import FencedError, PlantwatchError
from pipeline.idle import InputState
from pipeline.rewind import commit_metadata
from pipeline.runtime import RuntimeConfig, StageRuntime
from tests.fake_kafka import GroupConsumer, Message, RecordingProducer

TOPIC = "in"
P0, P1, P2 = (TopicPartition(TOPIC, i) for i in range(3))
LOG = logging.getLogger("plantwatch.test.runtime")


class StageFenced(PlantwatchError):
    """A stage's own ``fenced`` error."""


class StageLost(PlantwatchError):
    """A stage's own ``lost`` error."""


class Clock:
    """Monotonic seconds that only the test moves."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def tick(self, seconds: float = 1.0) -> Callable[[GroupConsumer], None]:
        """An ``on_poll``: each poll takes ``seconds``."""

        def advance(_consumer: GroupConsumer) -> None:
            self.t += seconds

        return advance


class Hooks:
    """The stage's side of the runtime: what it was told, logged to the shared events."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.forgotten: list[TopicPartition] = []
        self.replays: list[tuple[TopicPartition, int]] = []
        self.rebuilds = 0

    def forget(self, tp: TopicPartition) -> None:
        self.events.append(f"forget {tp.partition}")
        self.forgotten.append(tp)

    def replay(self, tp: TopicPartition, committed: int) -> None:
        self.events.append(f"replay {tp.partition} {committed}")
        self.replays.append((tp, committed))

    def on_rebuild(self) -> None:
        self.events.append("on_rebuild")
        self.rebuilds += 1


@pytest.fixture(autouse=True)
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses after refused batches, recorded instead of waited (every test: no sleeps)."""
    waited: list[float] = []

    def pause_for(consumer: Any, seconds: float) -> None:
        consumer.events.append(f"pause {seconds}")
        waited.append(seconds)

    monkeypatch.setattr(pipeline.runtime, "pause_for", pause_for)
    return waited


def _runtime(
    consumer: GroupConsumer,
    producer: RecordingProducer | None,
    hooks: Hooks,
    *,
    transactional: bool = False,
    replay: bool = True,
    backoff_max_s: float = 30.0,
    **kw: Any,
) -> StageRuntime:
    config = RuntimeConfig("stage", TOPIC, backoff_max_s=backoff_max_s, transactional=transactional)
    return StageRuntime(
        consumer,
        producer,
        config,
        LOG,
        forget=hooks.forget,
        replay=hooks.replay if replay else None,
        on_rebuild=hooks.on_rebuild,
        **kw,
    )


def _setup(
    assigned: Iterable[TopicPartition] = (P0, P1),
    *,
    transactional: bool = False,
    committed: dict[TopicPartition, tuple[int, str]] | None = None,
    fail: Callable[[str, bytes | None], BaseException | None] = lambda topic, value: None,
    refuse_commits: list[BaseException] | None = None,
    refuse_offset_commits: int = 0,
    **kw: Any,
) -> tuple[StageRuntime, GroupConsumer, RecordingProducer, Hooks, list[str]]:
    events: list[str] = []
    consumer = GroupConsumer(
        set(assigned), committed=committed, refuse_commits=refuse_offset_commits, events=events
    )
    producer = RecordingProducer(events, fail=fail, refuse_commits=refuse_commits)
    hooks = Hooks(events)
    runtime = _runtime(consumer, producer, hooks, transactional=transactional, **kw)
    events.clear()  # init_transactions
    return runtime, consumer, producer, hooks, events


def _records(*offsets: int) -> list[Message]:
    return [Message(o, b"k", b"v", 0) for o in offsets]


def _produce(runtime: StageRuntime, n: int = 2) -> Callable[[], None]:
    """A batch's outputs: ``n`` records on ``out``, from offsets 0.. of partition 0."""

    def produce() -> None:
        for i in range(n):
            runtime.send("out", b"k", b"v%d" % i, source=(TOPIC, 0, i))

    return produce


def _assign(consumer: GroupConsumer) -> None:
    consumer.poll(timeout_ms=0)  # the group assigns the partitions in the first poll


def _seeks(events: list[str]) -> list[str]:
    return sorted(e for e in events if e.startswith("consumer.seek"))


# --- group membership -----------------------------------------------------------------------


def test_subscribe_joins_the_input_topic_and_assignment_queues_rewinds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, consumer, _producer, hooks, _events = _setup({P2, P0})
    runtime.subscribe()
    assert consumer.topics == [TOPIC]
    assert runtime.pending_rewind == set()
    with caplog.at_level(logging.INFO, logger=LOG.name):
        _assign(consumer)
    assert runtime.pending_rewind == {P0, P2}
    assert runtime.rebalanced.is_set()
    assert not runtime.revoked.is_set()  # an assignment revokes nothing
    assert hooks.forgotten == []  # the listener only flags; the loop rewinds
    assert "stage: assigned [0, 2]" in caplog.messages


def test_revocation_drops_pending_rewinds_and_sets_revoked_and_rebalanced() -> None:
    runtime, consumer, _producer, hooks, _events = _setup({P0, P1, P2})
    runtime.subscribe()
    _assign(consumer)
    runtime.rebalanced.clear()
    consumer.listener.on_partitions_revoked({P0, P2})
    assert runtime.pending_rewind == {P1}
    assert runtime.revoked.is_set()
    assert runtime.rebalanced.is_set()
    assert hooks.forgotten == []  # the stage reacts to `revoked` in its loop


def test_revocation_forgets_each_revoked_partition_with_forget_on_revoke() -> None:
    runtime, consumer, _producer, hooks, _events = _setup({P0, P1, P2}, forget_on_revoke=True)
    runtime.subscribe()
    _assign(consumer)
    consumer.listener.on_partitions_revoked({P0, P2})
    assert sorted(hooks.forgotten) == [P0, P2]
    assert runtime.pending_rewind == {P1}
    assert runtime.revoked.is_set()


# --- rewinds --------------------------------------------------------------------------------


def test_a_partition_never_committed_is_rewound_to_the_beginning() -> None:
    runtime, _consumer, _producer, hooks, events = _setup({P0})
    runtime.pending_rewind.add(P0)
    runtime.rewind({})
    assert _seeks(events) == ["consumer.seek_to_beginning 0"]
    assert hooks.forgotten == [P0]
    assert hooks.replays == []
    assert runtime.pending_rewind == set()


@pytest.mark.parametrize("metadata", ["", "not json", '{"other": 3}'])
def test_a_commit_without_a_rewind_point_resumes_at_the_committed_offset(metadata: str) -> None:
    runtime, _consumer, _producer, hooks, events = _setup({P0}, committed={P0: (42, metadata)})
    runtime.pending_rewind.add(P0)
    runtime.rewind({})
    assert _seeks(events) == ["consumer.seek 0 42"]
    assert hooks.forgotten == [P0]
    assert hooks.replays == []


def test_without_a_replay_hook_the_rewind_point_is_ignored() -> None:
    runtime, _consumer, _producer, hooks, events = _setup(
        {P0}, committed={P0: (42, commit_metadata(30))}, replay=False
    )
    runtime.pending_rewind.add(P0)
    runtime.rewind({})
    assert _seeks(events) == ["consumer.seek 0 42"]
    assert hooks.forgotten == [P0]


def test_a_rewind_point_before_the_commit_is_sought_and_replayed_up_to_the_commit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, _consumer, _producer, hooks, events = _setup(
        {P0, P1}, committed={P0: (42, commit_metadata(30)), P1: (7, "")}
    )
    runtime.pending_rewind |= {P0, P1}
    with caplog.at_level(logging.INFO, logger=LOG.name):
        runtime.rewind({})
    assert _seeks(events) == ["consumer.seek 0 30", "consumer.seek 1 7"]
    assert hooks.replays == [(P0, 42)]
    assert sorted(hooks.forgotten) == [P0, P1]
    assert events.index("forget 0") < events.index("consumer.seek 0 30")  # forgotten, then sought
    assert "stage: partition 0: replaying offsets 30..42 to rebuild windows" in caplog.messages


def test_a_rewind_point_at_the_committed_offset_needs_no_replay() -> None:
    runtime, _consumer, _producer, hooks, events = _setup(
        {P0}, committed={P0: (42, commit_metadata(42))}
    )
    runtime.pending_rewind.add(P0)
    runtime.rewind({})
    assert _seeks(events) == ["consumer.seek 0 42"]
    assert hooks.replays == []


def test_rewind_drops_the_polled_records_of_rewound_partitions_only() -> None:
    runtime, _consumer, _producer, _hooks, _events = _setup({P0, P1}, committed={P0: (3, "")})
    runtime.pending_rewind.add(P0)
    polled = {P0: _records(3, 4), P1: _records(9)}
    runtime.rewind(polled)
    assert polled == {P1: _records(9)}  # the seek fetches P0's again


def test_rewind_skips_partitions_no_longer_assigned() -> None:
    runtime, _consumer, _producer, hooks, events = _setup({P1}, committed={P0: (3, "")})
    runtime.pending_rewind |= {P0, P1}
    polled = {P0: _records(3)}
    runtime.rewind(polled)
    assert _seeks(events) == ["consumer.seek_to_beginning 1"]  # P1: never committed
    assert hooks.forgotten == [P1]
    assert polled == {P0: _records(3)}
    assert runtime.pending_rewind == set()


# --- offsets --------------------------------------------------------------------------------


def test_offsets_carry_each_rewind_point_capped_at_the_offset() -> None:
    runtime, *_ = _setup()
    got = runtime.offsets({P0: 10, P1: 20, P2: 30}, {P0: 4, P1: 25})
    assert got == {
        P0: OffsetAndMetadata(10, commit_metadata(4), -1),
        P1: OffsetAndMetadata(20, commit_metadata(20), -1),  # capped at the offset
        P2: OffsetAndMetadata(30, commit_metadata(30), -1),  # no open window: the offset
    }


def test_offsets_without_rewind_points_carry_no_metadata() -> None:
    runtime, *_ = _setup()
    assert runtime.offsets({P0: 10, P1: 20}) == {
        P0: OffsetAndMetadata(10, "", -1),
        P1: OffsetAndMetadata(20, "", -1),
    }


# --- durable outputs: transactions ----------------------------------------------------------


def test_a_transactional_runtime_initialises_transactions_and_a_plain_one_does_not() -> None:
    events: list[str] = []
    _runtime(GroupConsumer({P0}), RecordingProducer(events), Hooks([]), transactional=True)
    assert events == ["producer.init_transactions"]
    _runtime(GroupConsumer({P0}), RecordingProducer(events := []), Hooks([]))
    assert events == []


def test_send_passes_only_the_options_it_was_given() -> None:
    runtime, _consumer, producer, _hooks, _events = _setup()
    runtime.send("out", b"k", b"v")
    runtime.send("out", None, None, headers=[("h", b"1")], partition=2, timestamp_ms=5)
    assert producer.sent == [
        ("out", b"k", b"v", {}),
        ("out", None, None, {"headers": [("h", b"1")], "partition": 2, "timestamp_ms": 5}),
    ]


def test_a_transaction_carries_the_outputs_and_the_offsets_in_one_commit() -> None:
    runtime, _consumer, producer, _hooks, events = _setup(transactional=True)
    offsets = runtime.offsets({P0: 2})
    assert runtime.commit(offsets, _produce(runtime)) is True
    assert events == [
        "producer.begin_transaction",
        "producer.send out",
        "producer.send out",
        "producer.flush",  # every send answered before the commit
        "producer.send_offsets_to_transaction",
        "producer.commit_transaction",
    ]
    assert producer.offsets == [(offsets, "group")]
    assert runtime.refused == {}
    assert runtime.failures == 0


def test_a_refused_transaction_is_aborted_paused_and_rebuilt_from_the_commits(
    pauses: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, _consumer, _producer, hooks, events = _setup(
        {P0, P1}, transactional=True, refuse_commits=[KafkaTimeoutError("coordinator away")]
    )
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        ok = runtime.commit(runtime.offsets({P0: 2}), _produce(runtime))
    assert ok is False
    assert pauses == [0.5]
    assert runtime.failures == 1
    tail = events[events.index("producer.commit_transaction") :]
    assert tail[:3] == ["producer.commit_transaction", "producer.abort_transaction", "pause 0.5"]
    assert tail[3] == "on_rebuild"  # called first, then every partition is forgotten
    assert sorted(tail[4:]) == ["forget 0", "forget 1"]
    assert hooks.rebuilds == 1
    assert runtime.pending_rewind == {P0, P1}  # each rewinds before its next record
    assert any(
        m.startswith("stage: batch not committed (KafkaTimeoutError")
        and m.endswith("rebuilding from the committed offsets in 0.5s")
        for m in caplog.messages
    )


def test_the_pause_doubles_with_each_refusal_in_a_row_up_to_backoff_max(
    pauses: list[float],
) -> None:
    refusals = [KafkaTimeoutError("coordinator away") for _ in range(5)]
    runtime, *_ = _setup(transactional=True, refuse_commits=refusals, backoff_max_s=3.0)
    results = [runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) for _ in range(6)]
    assert results == [False] * 5 + [True]
    assert pauses == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert runtime.failures == 0  # a committed batch ends the run of refusals
    runtime.producer.refuse_commits = [KafkaTimeoutError("again")]
    assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) is False
    assert pauses[-1] == 0.5  # from the first delay again


def test_the_pause_stays_at_backoff_max_after_a_long_outage(pauses: list[float]) -> None:
    # About 1100 refusals in a row: nine hours of refused commits at 30 s apart.
    refusals = [KafkaTimeoutError("coordinator away") for _ in range(1100)]
    runtime, *_ = _setup(transactional=True, refuse_commits=refusals, backoff_max_s=30.0)
    for _ in range(1100):
        assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime, 0)) is False
    assert pauses[-3:] == [30.0, 30.0, 30.0]
    assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime, 0)) is True


def test_an_abort_that_fails_too_is_still_a_refused_batch(pauses: list[float]) -> None:
    runtime, _consumer, producer, hooks, _events = _setup(
        transactional=True, refuse_commits=[KafkaTimeoutError("coordinator away")]
    )
    producer.refuse_abort = KafkaTimeoutError("still away")
    assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) is False
    assert pauses == [0.5]
    assert hooks.rebuilds == 1


@pytest.mark.parametrize("fenced", [StageFenced, FencedError])
def test_a_fenced_producer_stops_the_stage_with_its_fenced_error(
    fenced: type[PlantwatchError], pauses: list[float]
) -> None:
    kw: dict[str, Any] = {} if fenced is FencedError else {"fenced": fenced}
    runtime, _consumer, _producer, hooks, _events = _setup(
        transactional=True, refuse_commits=[ProducerFencedError("fenced")], **kw
    )
    with pytest.raises(fenced, match="PLANTWATCH_INSTANCE_ID") as info:
        runtime.commit(runtime.offsets({P0: 2}), _produce(runtime))
    assert "another stage instance" in str(info.value)
    assert isinstance(info.value.__cause__, ProducerFencedError)
    assert pauses == []  # no retry: another instance owns the transactional id
    assert hooks.rebuilds == 0


def test_a_record_refused_for_its_size_is_remembered_and_its_batch_refused(
    pauses: list[float],
) -> None:
    def too_large(topic: str, value: bytes | None) -> BaseException | None:
        return MessageSizeTooLargeError("MESSAGE_TOO_LARGE") if value == b"v1" else None

    runtime, _consumer, _producer, hooks, events = _setup(transactional=True, fail=too_large)
    assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) is False
    assert list(runtime.refused) == [(TOPIC, 0, 1)]
    assert "MessageSizeTooLargeError" in runtime.refused[(TOPIC, 0, 1)]
    assert "MESSAGE_TOO_LARGE" in runtime.refused[(TOPIC, 0, 1)]
    assert "producer.send_offsets_to_transaction" not in events  # the batch committed nothing
    assert "producer.commit_transaction" not in events
    assert "producer.abort_transaction" in events
    assert pauses == [0.5]
    assert hooks.rebuilds == 1
    assert runtime.failures == 1


@pytest.mark.parametrize(
    ("exc", "source"),
    [
        (MessageSizeTooLargeError("MESSAGE_TOO_LARGE"), None),  # e.g. a dead letter
        (KafkaTimeoutError("delivery timeout"), (TOPIC, 0, 0)),  # not the record's fault
        (RuntimeError("serializer broke"), (TOPIC, 0, 0)),
    ],
)
def test_a_failed_send_refuses_the_batch_and_remembers_no_record(
    exc: BaseException, source: tuple[str, int, int] | None, caplog: pytest.LogCaptureFixture
) -> None:
    runtime, _consumer, _producer, hooks, events = _setup(
        transactional=True, fail=lambda topic, value: exc
    )

    def produce() -> None:
        runtime.send("out", b"k", b"v", source=source)

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert runtime.commit(runtime.offsets({P0: 1}), produce) is False
    assert runtime.refused == {}
    assert "producer.commit_transaction" not in events
    assert hooks.rebuilds == 1
    assert type(exc).__name__ in caplog.text


def test_the_failed_sends_of_an_aborted_batch_do_not_refuse_the_next(
    pauses: list[float],
) -> None:
    failing = [True]

    def fail(topic: str, value: bytes | None) -> BaseException | None:
        return KafkaTimeoutError("delivery timeout") if failing[0] else None

    runtime, *_ = _setup(transactional=True, fail=fail)
    assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) is False
    failing[0] = False
    assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) is True
    assert runtime.failures == 0


# --- durable outputs: without transactions --------------------------------------------------


def test_a_plain_commit_flushes_the_outputs_before_before_commit_and_the_offsets() -> None:
    runtime, consumer, _producer, _hooks, events = _setup()
    offsets = runtime.offsets({P0: 2})
    ok = runtime.commit(
        offsets, _produce(runtime), before_commit=lambda: events.append("before_commit")
    )
    assert ok is True
    assert events == [
        "producer.send out",
        "producer.send out",
        "producer.flush",
        "before_commit",
        "consumer.commit",
    ]
    assert consumer.commits == [offsets]


def test_a_plain_batch_without_outputs_needs_no_producer() -> None:
    events: list[str] = []
    consumer = GroupConsumer({P0}, events=events)
    runtime = _runtime(consumer, None, Hooks(events))
    ok = runtime.commit(
        runtime.offsets({P0: 2}), lambda: None, before_commit=lambda: events.append("before")
    )
    assert ok is True
    assert events == ["before", "consumer.commit"]


def test_a_plain_batch_flushes_only_when_it_sent() -> None:
    runtime, _consumer, _producer, _hooks, events = _setup()
    assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) is True
    events.clear()
    assert runtime.commit(runtime.offsets({P0: 3}), lambda: None) is True
    assert events == ["consumer.commit"]  # the sends are counted per batch


def test_a_plain_batch_whose_outputs_were_lost_raises_and_commits_nothing() -> None:
    runtime, consumer, _producer, _hooks, events = _setup(
        fail=lambda topic, value: KafkaTimeoutError("delivery timeout"), lost=StageLost
    )
    with pytest.raises(StageLost, match="KafkaTimeoutError") as info:
        runtime.commit(
            runtime.offsets({P0: 2}),
            _produce(runtime),
            before_commit=lambda: events.append("before_commit"),
        )
    assert "the batch was not committed" in str(info.value)
    assert "before_commit" not in events
    assert "consumer.commit" not in events
    assert consumer.commits == []


@pytest.mark.parametrize("rebuild", [True, False])
def test_a_refused_offset_commit_warns_and_rebuilds_only_when_asked(
    rebuild: bool, caplog: pytest.LogCaptureFixture, pauses: list[float]
) -> None:
    runtime, consumer, _producer, hooks, _events = _setup(
        {P0, P1},
        refuse_offset_commits=1,
        refused_commit_note="the outputs come again",
        rebuild_on_refused_commit=rebuild,
    )
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) is False
    warning = next(m for m in caplog.messages if "refused the offset commit" in m)
    assert warning.startswith("stage: Kafka refused the offset commit (CommitFailedError")
    assert warning.endswith("; the outputs come again")
    assert consumer.commits == []
    assert pauses == []
    if rebuild:
        assert hooks.rebuilds == 1
        assert sorted(hooks.forgotten) == [P0, P1]
        assert runtime.pending_rewind == {P0, P1}
    else:
        assert hooks.rebuilds == 0
        assert hooks.forgotten == []
        assert runtime.pending_rewind == set()
    assert runtime.commit(runtime.offsets({P0: 2}), _produce(runtime)) is True  # the next one


# --- the loop -------------------------------------------------------------------------------


class Loop:
    """A runtime whose consumer moves the clock ``tick`` seconds per poll, and the stage's
    callbacks for :meth:`StageRuntime.run`, recording what they were given."""

    def __init__(
        self,
        polls: list[dict[Any, list[Message]]] | None = None,
        *,
        tick: float = 1.0,
        probe: Callable[[], InputState] = lambda: InputState(True, True),
        log_every_s: float = 10.0,
        max_polls: int = 1000,
    ) -> None:
        self.clock = Clock()
        self.stop = threading.Event()
        self.events: list[str] = []

        def on_poll(consumer: GroupConsumer) -> None:
            self.clock.t += tick
            if len(consumer.polls_asked) >= max_polls:  # a loop that does not stop
                self.stop.set()

        self.consumer = GroupConsumer({P0}, polls, events=self.events, on_poll=on_poll)
        config = RuntimeConfig(
            "stage", TOPIC, poll_timeout_ms=300, max_poll_records=77, log_every_s=log_every_s
        )
        self.runtime = StageRuntime(
            self.consumer, RecordingProducer(self.events), config, LOG, clock=self.clock,
            probe=probe,
        )  # fmt: skip
        self.steps: list[tuple[dict[Any, list[Message]], float]] = []
        self.lines: list[str] = []
        self.consumed = 0

    def step(self, polled: dict[Any, list[Message]], now: float) -> None:
        self.steps.append((polled, now))
        self.consumed += sum(len(r) for r in polled.values())

    def line(self, rate: float) -> str:
        return f"{rate:.2f} records/s"

    def count(self) -> int:
        return self.consumed

    def run(self, **kw: Any) -> None:
        kw.setdefault("on_log", self.lines.append)
        self.runtime.run(self.stop, self.step, self.line, self.count, **kw)


def test_run_subscribes_and_steps_every_poll_with_the_clock_of_the_runtime() -> None:
    polls = [{P0: _records(0, 1)}, {}, {P0: _records(2)}]
    loop = Loop(polls, tick=0.25, max_polls=4)
    loop.run()
    assert loop.consumer.topics == [TOPIC]
    assert loop.runtime.pending_rewind == {P0}  # assigned in the first poll, for the stage
    assert loop.steps == [
        ({P0: _records(0, 1)}, 0.25),
        ({}, 0.5),
        ({P0: _records(2)}, 0.75),
        ({}, 1.0),
    ]
    assert loop.consumer.polls_asked == [(300, 77)] * 4  # the config's timeout and size


def test_run_asks_poll_ms_for_each_poll_timeout() -> None:
    loop = Loop(max_polls=3)
    waits = iter([7, 0, 250])
    loop.run(poll_ms=lambda: next(waits))
    assert [timeout for timeout, _ in loop.consumer.polls_asked] == [7, 0, 250]


def test_run_logs_progress_every_log_every_s_at_the_rate_of_that_interval() -> None:
    # 5 records a poll for 10 s, then 2 a poll; one poll a second; stopped after 25 s.
    polls = [{P0: _records(*range(5))}] * 10 + [{P0: _records(*range(2))}] * 15
    loop = Loop(polls, max_polls=25)
    loop.run(closing=lambda rate: f"done at {rate:.2f}")
    assert loop.lines == ["5.00 records/s", "2.00 records/s", "done at 3.20"]


def test_run_logs_to_the_stage_logger_by_default(caplog: pytest.LogCaptureFixture) -> None:
    loop = Loop([{P0: _records(0, 1, 2, 3)}], tick=2.0, max_polls=2)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        loop.runtime.run(loop.stop, loop.step, loop.line, loop.count)
    assert caplog.messages[-1] == "1.00 records/s"  # the closing line: 4 records in 4 s


def test_run_stops_when_the_stage_is_done() -> None:
    loop = Loop([{P0: _records(i)} for i in range(10)])
    loop.run(done=lambda: loop.consumed >= 3)
    assert len(loop.steps) == 3
    assert not loop.stop.is_set()


def test_run_drains_then_logs_the_closing_line_at_the_whole_run_rate() -> None:
    loop = Loop([{P0: _records(0, 1, 2)}], tick=0.5, max_polls=4)

    def drain() -> None:
        loop.lines.append("drained")
        loop.consumed += 1  # what was pending, counted

    loop.run(drain=drain)
    assert loop.lines == ["drained", "2.00 records/s"]  # 4 records in 2 s, no other line


def test_run_exits_after_idle_exit_s_when_the_input_is_caught_up() -> None:
    probes: list[float] = []

    def probe() -> InputState:
        probes.append(loop.clock.t)
        return InputState(True, True)

    loop = Loop([{P0: _records(0)}], probe=probe)
    drained: list[float] = []
    loop.run(idle_exit_s=5.0, drain=lambda: drained.append(loop.clock.t))
    assert 6.0 <= loop.clock.t <= 8.0  # 5 idle seconds from the last record (t = 1)
    assert probes  # the probe given to the runtime decided it
    assert drained == [loop.clock.t]
    assert not loop.stop.is_set()


@pytest.mark.parametrize(
    "state",
    [
        InputState(True, False, "records left to read per partition {0: 3}"),
        InputState(False, False, "KafkaTimeoutError"),
    ],
)
def test_run_does_not_exit_idle_unless_kafka_answers_and_the_input_is_caught_up(
    state: InputState, caplog: pytest.LogCaptureFixture
) -> None:
    loop = Loop(probe=lambda: state, max_polls=60)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        loop.run(idle_exit_s=5.0)
    assert len(loop.steps) == 60  # stopped by `stop`, not by --idle-exit
    assert any(m.startswith("stage: ") and "--idle-exit" in m for m in caplog.messages)


def test_run_does_not_exit_idle_while_the_stage_is_busy() -> None:
    loop = Loop(max_polls=100)
    asked: list[float] = []

    def busy() -> bool:
        asked.append(loop.clock.t)
        return loop.clock.t < 12.0

    loop.run(idle_exit_s=5.0, busy=busy)
    assert loop.clock.t == 12.0  # held past 5 s, out at the first poll it is not busy
    assert asked[0] >= 5.0  # asked only once idle time is due
    assert not loop.stop.is_set()


def test_run_without_idle_exit_never_probes() -> None:
    def probe() -> InputState:
        raise AssertionError("probed")

    loop = Loop(probe=probe, max_polls=30)
    loop.run()
    assert len(loop.steps) == 30


def test_an_error_of_the_stage_in_produce_is_not_taken_for_a_refused_batch(
    pauses: list[float],
) -> None:
    # Only Kafka's errors make a refused batch; a bug of the stage propagates.
    runtime, _consumer, _producer, hooks, _events = _setup(transactional=True)

    def produce() -> None:
        raise ValueError("a stage bug")

    with pytest.raises(ValueError, match="a stage bug"):
        runtime.commit(runtime.offsets({P0: 1}), produce)
    assert pauses == []
    assert hooks.rebuilds == 0
