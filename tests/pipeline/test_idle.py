"""The --idle-exit decision (pipeline.idle): a fake clock and a fake broker, no Kafka."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from pipeline.idle import IdleExit, InputState, consumer_lag, kafka_probe, records_to_read

LIMIT_S = 5.0
POLL_S = 0.5  # one stage loop: a poll that returns nothing after its timeout
PROBE_TIMEOUT_S = 2.0  # a probe of a broker that is down blocks this long


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Broker:
    """Answers a probe unless the time is in one of the outages; probes are recorded."""

    def __init__(self, clock: Clock, outages: list[tuple[float, float]]) -> None:
        self.clock = clock
        self.outages = outages
        self.probes: list[float] = []

    def down(self) -> bool:
        return any(a <= self.clock.t < b for a, b in self.outages)

    def probe(self) -> InputState:
        self.probes.append(self.clock.t)
        if self.down():
            self.clock.t += PROBE_TIMEOUT_S  # end_offsets waits for its timeout
            return InputState(False, False, "KafkaTimeoutError: no answer")
        return InputState(True, True)


def _run_stage(
    idle: IdleExit, clock: Clock, records_at: Callable[[float], bool], until: float = 300.0
) -> float:
    """A stage loop (poll, then the idle decision) until idle exit; returns the exit time."""
    while clock.t < until:
        clock.t += POLL_S
        if idle.due(records_at(clock.t)):
            return clock.t
    raise AssertionError(f"no idle exit within {until}s")


def _idle(broker: Broker, clock: Clock, said: list[str]) -> IdleExit:
    return IdleExit(LIMIT_S, broker.probe, said.append, clock=clock)


def test_an_idle_stage_exits_after_the_limit_when_the_broker_answers() -> None:
    clock, said = Clock(), []
    broker = Broker(clock, [])
    stopped = _run_stage(_idle(broker, clock, said), clock, lambda t: t <= 3.0)
    assert 3.0 + LIMIT_S <= stopped <= 3.0 + LIMIT_S + POLL_S
    assert said == []


def test_a_broker_outage_longer_than_the_limit_is_not_idle_time() -> None:
    # The bug: the stage is idle (caught up) when the broker stops for 8x the limit; it
    # used to stop LIMIT_S into the outage with exit 0, as if the input had ended.
    clock, said = Clock(), []
    outage = (4.0, 4.0 + 8 * LIMIT_S)
    broker = Broker(clock, [outage])
    stopped = _run_stage(_idle(broker, clock, said), clock, lambda t: t <= 2.0)
    assert stopped >= outage[1] + LIMIT_S - PROBE_TIMEOUT_S - POLL_S  # idle counted after it
    assert stopped <= outage[1] + LIMIT_S + PROBE_TIMEOUT_S + POLL_S
    assert any(outage[0] <= t < outage[1] for t in broker.probes), "the outage was never seen"
    assert said[0].startswith("Kafka does not answer (KafkaTimeoutError: no answer)")
    assert "waiting for the broker" in said[0]
    assert said[-1].startswith("Kafka answers again")
    assert sum("waiting for the broker" in line for line in said) == 2  # one reminder (30 s)


def test_work_after_the_outage_is_done_before_the_idle_exit() -> None:
    clock, said = Clock(), []
    outage = (1.0, 40.0)
    broker = Broker(clock, [outage])
    more = (outage[1] + 3.0, outage[1] + 4.0)  # the upstream catches up after the outage
    stopped = _run_stage(
        _idle(broker, clock, said), clock, lambda t: more[0] <= t <= more[1] or t <= 0.5
    )
    assert stopped >= more[1] + LIMIT_S


def test_an_outage_between_two_probes_restarts_the_count() -> None:
    clock, said = Clock(), []
    broker = Broker(clock, [(3.0, 4.5)])  # shorter than the limit, inside one idle period
    stopped = _run_stage(_idle(broker, clock, said), clock, lambda t: t <= 1.0)
    assert stopped >= 4.5 + LIMIT_S - PROBE_TIMEOUT_S - POLL_S
    assert stopped > 1.0 + LIMIT_S + PROBE_TIMEOUT_S  # the old count would have ended at 6


def test_not_caught_up_is_not_idle() -> None:
    clock, said = Clock(), []
    states = iter(
        [InputState(True, False, "records left to read per partition {0: 7}")] * 6
        + [InputState(True, True)] * 100
    )
    idle = IdleExit(LIMIT_S, lambda: next(states), said.append, clock=clock)
    stopped = _run_stage(idle, clock, lambda t: False)
    assert stopped >= 6 * 2.0 + LIMIT_S - POLL_S  # six probes (every 2 s) found records left
    assert len(said) == 1, said
    assert said[0].startswith("6s without records but not caught up (records left to read")


def test_no_limit_never_probes_and_records_are_never_probed() -> None:
    clock = Clock()
    broker = Broker(clock, [(0.0, 1e9)])
    idle = IdleExit(None, broker.probe, print, clock=clock)
    for _ in range(100):
        clock.t += 1.0
        assert not idle.due(False)
    busy = IdleExit(LIMIT_S, broker.probe, print, clock=clock)
    for _ in range(100):
        clock.t += 1.0
        assert not busy.due(True)
    assert broker.probes == []


@pytest.mark.parametrize(
    ("position", "end", "highwater", "left"),
    [
        (10, 10, 10, {}),  # at the end
        (9, 10, 10, {}),  # before the commit marker the last fetch already saw
        (9, 10, 9, {"p": 1}),  # a record that arrived after the last fetch
        (8, 10, 10, {"p": 2}),  # a record and a marker: still to read
        (None, 4, None, {"p": 4}),  # no position yet
        (12, 10, 12, {}),  # past an end read before the last records (next probe sees them)
    ],
)
def test_records_to_read(
    position: int | None, end: int, highwater: int | None, left: dict[str, int]
) -> None:
    assert records_to_read({"p": position}, {"p": end}, {"p": highwater}) == left


class FakeConsumer:
    def __init__(
        self,
        positions: dict[Any, Any],
        ends: dict[Any, int] | Exception,
        hw: dict[Any, int],
    ) -> None:
        self.positions, self.ends, self.hw = positions, ends, hw
        self.timeouts: list[int] = []

    def assignment(self) -> set[Any]:
        return set(self.positions)

    def end_offsets(self, partitions: list[Any], timeout_ms: int) -> dict[Any, int]:
        self.timeouts.append(timeout_ms)
        if isinstance(self.ends, Exception):
            raise self.ends
        return {tp: self.ends[tp] for tp in partitions}

    def position(self, tp: Any, timeout_ms: int) -> int:
        if isinstance(self.positions[tp], Exception):
            raise self.positions[tp]
        return self.positions[tp]

    def highwater(self, tp: Any) -> int | None:
        return self.hw.get(tp)


def test_kafka_probe() -> None:
    p0, p1 = TopicPartition("features", 0), TopicPartition("features", 1)
    # A transactional topic read to the end: p1 sits before its last commit marker.
    caught_up = FakeConsumer({p0: 7, p1: 11}, {p0: 7, p1: 12}, {p0: 7, p1: 12})
    assert kafka_probe(caught_up, timeout_s=1.5)() == InputState(True, True)
    assert caught_up.timeouts == [1500]
    behind = FakeConsumer({p0: 3, p1: 11}, {p0: 7, p1: 12}, {p0: 7, p1: 11})
    assert kafka_probe(behind)() == InputState(
        True, False, "records left to read per partition {0: 4, 1: 1}"
    )
    down = FakeConsumer({p0: 7}, KafkaTimeoutError("Failed to get offsets in 2000 ms"), {})
    state = kafka_probe(down)()
    assert not state.reachable
    assert not state.idle
    assert state.detail == "KafkaTimeoutError: Failed to get offsets in 2000 ms"
    unassigned = FakeConsumer({}, {}, {})
    assert kafka_probe(unassigned)() == InputState(True, False, "no partitions assigned (yet)")


def test_consumer_lag() -> None:
    p0, p1, p2 = (TopicPartition("features", p) for p in range(3))
    # p1 sits before its last commit marker: caught up, not one behind.
    assert consumer_lag(FakeConsumer({p0: 7, p1: 11}, {}, {p0: 7, p1: 12})) == 0
    assert consumer_lag(FakeConsumer({p0: 3, p1: 9}, {}, {p0: 7, p1: 12})) == 4 + 3
    # No fetch yet (no high watermark), or no position without a round trip: left out.
    gone = KafkaTimeoutError("no position")
    assert consumer_lag(FakeConsumer({p0: 3, p1: gone, p2: 0}, {}, {p0: 5, p1: 9})) == 2


def test_once_due_it_stays_due_without_a_probe_per_call() -> None:
    # The scorer asks every few milliseconds while its last batch is still being scored.
    clock = Clock()
    broker = Broker(clock, [])
    idle = IdleExit(LIMIT_S, broker.probe, print, clock=clock)
    clock.t = LIMIT_S
    assert idle.due(False)
    probes = len(broker.probes)
    for _ in range(100):
        clock.t += 0.005
        assert idle.due(False)
    assert len(broker.probes) == probes
    clock.t += 2.0  # re-probed after probe_every_s: the broker has gone meanwhile
    back = clock.t + 60
    broker.outages.append((clock.t, back))
    while clock.t < back:
        assert not idle.due(False)
        clock.t += POLL_S
    recovered = clock.t
    while not idle.due(False):
        clock.t += POLL_S
    assert recovered + LIMIT_S - PROBE_TIMEOUT_S - POLL_S <= clock.t <= recovered + LIMIT_S
    assert not idle.due(True)  # records: not due any more
