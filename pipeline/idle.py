"""When a stage's ``--idle-exit`` is due: the one place ingest, scorer and alerting decide it.

``--idle-exit N`` means "no more input": stop after N seconds in which the input topic had
nothing new for this consumer. A poll that returns nothing is not enough to say so: while
the broker is down (or the group is rebalancing, or the consumer is still behind the
partition ends after reconnecting) every poll returns nothing too, and an outage would
look like the end of the input. So idle time only counts while a probe of the input finds

- the broker answering (the partition end offsets are fetched from it), and
- the consumer caught up: every assigned partition's position at its end offset.

A transactional topic (features, predictions) ends each transaction with a commit marker
that takes an offset but is never returned as a record, so a consumer that read
everything can sit one offset before the end: that counts as caught up when the
consumer's last fetch already reported that end (see :func:`records_to_read`). The
ingest and scorer lag gauges count by the same rule (:func:`consumer_lag`).

:class:`IdleExit` holds the decision (a clock and a probe are injected, so the logic is
tested without Kafka); :func:`kafka_probe` is the probe of a kafka-python consumer. While
the probe fails the stage keeps running, logs that it waits for the broker (again every
``remind_every_s``), and counts idle time from the first probe that succeeds again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", bound=Hashable)

PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 2.0
REMIND_EVERY_S = 30.0


@dataclass(frozen=True)
class InputState:
    """What one probe of a stage's input found.

    Attributes:
        reachable: the broker answered.
        caught_up: (when reachable) the consumer has read everything there is.
        detail: why not, for the log (the broker's error, records left to read).
        left: (when the broker answered) records left to read per partition behind its
            end; None when not known.
    """

    reachable: bool
    caught_up: bool = False
    detail: str = ""
    left: dict[Any, int] | None = field(default=None, compare=False)

    @property
    def idle(self) -> bool:
        """Idle time may count: the broker answers and there is nothing left to read."""
        return self.reachable and self.caught_up


def records_to_read(
    positions: Mapping[T, int | None],
    ends: Mapping[T, int],
    highwaters: Mapping[T, int | None],
) -> dict[T, int]:
    """Offsets each partition still has to be read up to its end (only those behind).

    A partition whose position is its end offset is caught up. One offset before the end
    it is too, when the consumer's last fetch already reported that end as the partition's
    high watermark: the fetch covered the offset and returned no record for it, so it is a
    transaction's commit marker (the position of a consumer of a transactional topic often
    stays before the last marker), not a record still to come. Without that report (a record
    that arrived after the last fetch) the offset counts as one to read.

    >>> records_to_read({"p0": 10, "p1": 9, "p2": 9}, {"p0": 10, "p1": 10, "p2": 10},
    ...                 {"p0": 10, "p1": 10, "p2": 9})
    {'p2': 1}
    >>> records_to_read({"p0": 4, "p1": None}, {"p0": 9, "p1": 3}, {"p0": 9, "p1": None})
    {'p0': 5, 'p1': 3}
    """
    left: dict[T, int] = {}
    for tp, end in ends.items():
        position = positions.get(tp)
        if position is None:  # no position yet (just assigned): all of it is to read
            left[tp] = end
            continue
        behind = end - position
        if behind <= 0 or (behind == 1 and highwaters.get(tp) == end):
            continue
        left[tp] = behind
    return left


def kafka_probe(consumer: Any, timeout_s: float = PROBE_TIMEOUT_S) -> Callable[[], InputState]:
    """The probe of a subscribed kafka-python ``KafkaConsumer`` for :class:`IdleExit`.

    Each call asks the broker for the end offsets of the assigned partitions (a round trip
    of at most ``timeout_s``; no answer = not reachable) and compares them with the
    consumer's positions. No assigned partition (not joined yet, or a rebalance after the
    broker came back) is not idle either: the input is not this consumer's yet.
    """

    def probe() -> InputState:
        from kafka.errors import KafkaError

        assigned = list(consumer.assignment())
        if not assigned:
            return InputState(True, False, "no partitions assigned (yet)")
        timeout_ms = int(timeout_s * 1000)
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=timeout_ms)
        except KafkaError as exc:
            return InputState(False, False, _error(exc))
        try:
            positions = {tp: consumer.position(tp, timeout_ms=timeout_ms) for tp in ends}
            highwaters = {tp: consumer.highwater(tp) for tp in ends}
        except KafkaError as exc:  # e.g. a partition revoked meanwhile
            return InputState(True, False, _error(exc))
        left = records_to_read(positions, ends, highwaters)
        if left:
            parts = ", ".join(f"{tp.partition}: {n}" for tp, n in sorted(left.items()))
            detail = f"records left to read per partition {{{parts}}}"
            return InputState(True, False, detail, left)
        return InputState(True, True, left=left)

    return probe


def consumer_lag(consumer: Any) -> int:
    """Records a kafka-python consumer has still to read from its assigned partitions.

    Per partition: the high watermark of its last fetch minus the consumer's position
    (Kafka's own ``records-lag``), without a transaction's trailing commit marker (see
    :func:`records_to_read`), so a consumer of a transactional topic that read everything
    has lag 0, not one per partition. One record left unread from a fetch (a poll capped
    by ``max_records``) looks the same and also counts 0, until the next poll reads it.
    Asks the broker nothing: a partition without a fetch (no high watermark) or without a
    position yet is left out.
    """
    from kafka.errors import KafkaError

    positions: dict[Any, int | None] = {}
    highwaters: dict[Any, int] = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        try:
            position = consumer.position(tp, timeout_ms=0)
        except KafkaError:  # revoked meanwhile, or no position without a round trip
            continue
        if position is not None:
            positions[tp], highwaters[tp] = position, high
    return sum(records_to_read(positions, highwaters, highwaters).values())


def _error(exc: BaseException) -> str:
    """``Name: message`` of an exception (kafka-python's messages often start with the name).

    >>> _error(TimeoutError("TimeoutError: no answer in 2000 ms")), _error(TimeoutError())
    ('TimeoutError: no answer in 2000 ms', 'TimeoutError')
    """
    name, text = type(exc).__name__, str(exc)
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


class IdleExit:
    """Decides when ``limit_s`` seconds of idle input have passed; call :meth:`due` each poll.

    Args:
        limit_s: the ``--idle-exit`` seconds; None: never due (and never probes).
        probe: what the input looks like now (:func:`kafka_probe`); called after
            ``probe_every_s`` seconds without records and when the limit is reached, never
            while records arrive.
        say: where the "waiting for the broker" lines go (a warning log).
        clock: monotonic seconds (injected for tests).
        probe_every_s: seconds between probes while no records arrive.
        remind_every_s: seconds between repeated "still waiting" lines.

    >>> t = [0.0]
    >>> idle = IdleExit(5, lambda: InputState(True, True), print, clock=lambda: t[0])
    >>> t[0] = 4.9; idle.due(False)
    False
    >>> t[0] = 5.0; idle.due(False)
    True
    """

    def __init__(
        self,
        limit_s: float | None,
        probe: Callable[[], InputState],
        say: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        probe_every_s: float = PROBE_EVERY_S,
        remind_every_s: float = REMIND_EVERY_S,
    ) -> None:
        self.limit_s = limit_s
        self.probe = probe
        self.say = say
        self.clock = clock
        self.probe_every_s = probe_every_s
        self.remind_every_s = remind_every_s
        self.since = clock()  # idle time counts from here
        self._last_probe = self._last_records = self.since
        self._unreachable_since: float | None = None
        self._last_said: tuple[str, float] | None = None  # (what, when)
        self._confirmed = False  # the last probe, made after the limit was reached, found idle

    def due(self, got_records: bool) -> bool:
        """True when the stage should stop now: ``limit_s`` idle seconds have counted.

        Once due it stays due (probed again at most every ``probe_every_s``) until records
        arrive or a probe fails: a stage may finish pending work first (the scorer).
        """
        if self.limit_s is None:
            return False
        now = self.clock()
        if got_records:
            self.since = self._last_records = now
            self._confirmed = False
            self._back(now)  # records come only from a broker that answers
            return False
        expired = now - self.since >= self.limit_s
        if now - self._last_probe < self.probe_every_s:
            if not expired:
                return False
            if self._confirmed:  # due, and a probe since the limit was reached said so
                return True
        state = self.probe()
        after = self.clock()
        self._last_probe = after
        if state.idle:
            self._back(after)
            self._confirmed = expired
            return expired
        self.since = after  # none of the time up to this probe counts
        self._confirmed = False
        if not state.reachable:
            if self._unreachable_since is None:
                self._unreachable_since = after
            self._tell(
                "broker",
                after,
                f"Kafka does not answer ({state.detail}); waiting for the broker, "
                f"--idle-exit counts only while it answers",
            )
        elif after - self._last_records >= self.limit_s:
            self._tell(
                "behind",
                after,
                f"{after - self._last_records:.0f}s without records but not caught up "
                f"({state.detail}); --idle-exit waits",
            )
        return False

    def _back(self, now: float) -> None:
        if self._unreachable_since is not None:
            self.say(
                f"Kafka answers again (after {now - self._unreachable_since:.0f}s); "
                "--idle-exit counts from now"
            )
            self._unreachable_since = None
            self._last_said = None

    def _tell(self, what: str, now: float, line: str) -> None:
        last = self._last_said
        if last is None or last[0] != what or now - last[1] >= self.remind_every_s:
            self.say(line)
            self._last_said = (what, now)
