"""The alerting stage: predictions in; InfluxDB points, alert events and tickets out.

One loop, one batch at a time::

    poll -> skip records the store already applied (offset below its stored offset)
         -> decode + known model version, else dead letter
         -> per machine: state machine step -> failure_risk point, alerts points, tickets
         -> InfluxDB write of all points (synchronous; paused + retried while it is down;
            a record whose points InfluxDB refuses becomes a dead letter ``sink_refused``)
         -> dead letters produced and flushed
         -> ONE SQLite transaction: states, tickets, outbox rows, stored offsets
         -> Kafka offsets commit

A crash before the SQLite commit replays the batch: the points overwrite themselves and
the state machine, restarted from the stored state, makes the same decisions. A crash
between the SQLite commit and the Kafka commit replays records that the store already
applied; they are skipped, and neither the stored offset nor Kafka's goes back below
them. The store is the truth about alert state, so after a
rebalance the in-memory cache is dropped and states are read back from it.

InfluxDB's refusal of points (HTTP 400/413/422, e.g. a field type conflict) never stops a
partition: the write is bisected by source record (:func:`pipeline.influxlines.isolate`),
the other records' points are written, and each refused record goes to the DLQ with
InfluxDB's words; the state machine keeps what the record did (docs/alerting.md).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from alerting import store
from alerting.errors import DeadLetterError, RefusedWriteError, TransientWriteError
from alerting.influx import InfluxWriter, alert_line, risk_line
from alerting.metrics import AlertMetrics
from alerting.rules import Rules, Silences
from alerting.state import AlertEvent, MachineState, check_deadman, opens_ticket, step
from alerting.tickets import new_ticket
from pipeline.deadletter import DeadLetter, letter_of
from pipeline.influxlines import isolate
from pipeline.paused import retry_paused
from pipeline.predictions import Prediction, decode_prediction
from pipeline.runtime import RuntimeConfig, StageRuntime

log = logging.getLogger("plantwatch.alerting")


@dataclass(frozen=True)
class AlertConfig:
    """How the alerting loop behaves.

    Attributes:
        topic: the predictions topic.
        dlq_topic: where refused prediction records go.
        group: the consumer group (also the key of the stored offsets).
        bucket: InfluxDB bucket named in tickets' Flux queries.
        sinks: outbox sinks each new ticket goes to besides the store (webhook, kafka).
        poll_timeout_ms: how long one poll waits for records.
        max_poll_records: most records per batch.
        log_every_s: seconds between progress lines.
        backoff_max_s: longest wait between InfluxDB retries.
        deadman_every_s: seconds between deadman checks.
        crash_window_s: test hook: sleep between the store and the Kafka commit.
    """

    topic: str = "predictions"
    dlq_topic: str = "predictions.dlq"
    group: str = "plantwatch-alerting"
    bucket: str = "plantwatch"
    sinks: tuple[str, ...] = ()
    poll_timeout_ms: int = 500
    max_poll_records: int = 2000
    log_every_s: float = 10.0
    backoff_max_s: float = 30.0
    deadman_every_s: float = 5.0
    crash_window_s: float = 0.0


@dataclass
class _Batch:
    """One polled batch's outputs before they are durable.

    ``groups``: the points of each applied prediction record, with that record (a record
    whose points InfluxDB refuses is dead-lettered whole); ``points``: how many were written.
    """

    groups: list[tuple[Any, Any, list[str]]] = field(default_factory=list)
    points: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    ended: list[tuple[str, int]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    offsets: dict[Any, int] = field(default_factory=dict)
    consumed: int = 0


class AlertingService:
    """Runs the alerting loop over a kafka-python consumer and producer.

    Args:
        consumer: a ``KafkaConsumer`` (not subscribed; ``run`` subscribes it).
        producer: a ``KafkaProducer`` for dead letters.
        writer: the InfluxDB writer.
        conn: the store connection of this loop.
        rules: alert rules.
        config: loop settings.
        silences: returns the silences in force (re-read when their file changes).
        known_version: whether a model version is known (unknown ones are dead letters).
        metrics: counters (a fresh set by default).
        wall: wall clock in seconds (deadman, ticket creation times).
    """

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        writer: InfluxWriter,
        conn: sqlite3.Connection,
        rules: Rules,
        config: AlertConfig,
        silences: Callable[[], Silences],
        known_version: Callable[[str], bool],
        metrics: AlertMetrics | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._writer = writer
        self._conn, self.rules, self.config = conn, rules, config
        self._silences, self._known = silences, known_version
        self.metrics = metrics or AlertMetrics()
        self._wall = wall
        self._states: dict[str, tuple[int, MachineState]] = {}
        self.runtime = StageRuntime(
            consumer,
            producer,
            RuntimeConfig.of("alert", config),
            log,
            on_lag=self.metrics.set_lag,
            lost=DeadLetterError,
            outputs="the dead letters",
            # The batch's outputs and offsets are in the store, and records that come again
            # are skipped below its offsets, as after a crash at this point
            # (docs/alerting.md, exactly once). The next poll rejoins the group.
            refused_commit_note="the store's offsets stand and records read again are skipped",
            rebuild_on_refused_commit=False,
        )
        self._last_dead = 0.0

    def _state(self, eid: str, partition: int) -> MachineState:
        found = self._states.get(eid)
        if found is None:
            st = store.load_state(self._conn, eid) or MachineState(eid)
            found = (partition, st)
            self._states[eid] = found
        elif found[0] != partition:
            found = (partition, found[1])
            self._states[eid] = found
        return found[1]

    def _record(self, b: _Batch, tp: Any, msg: Any, now_ms: int) -> None:
        p, reason = decode_prediction(msg.value)
        code = "bad_record"
        if p is not None and not self._known(p.model_version):
            reason, code = (
                f"model_version {p.model_version!r} is not in the models directory",
                "unknown_model_version",
            )
        if p is None or reason is not None:
            b.dead.append(letter_of(tp, msg, code, reason or "", "alerting"))
            b.reasons[code] += 1
            return
        st = self._state(p.equipment_id, tp.partition)
        fresh = st.last_time is None or p.window_end > st.last_time
        silenced = self._silences().active(p.equipment_id, p.window_end)
        events = step(
            st,
            p.window_end,
            p.probability,
            self.rules,
            silenced=silenced,
            wall_ms=now_ms,
            top=list(p.top_sensors),
        )
        b.touched.add(p.equipment_id)
        lines = [risk_line(p, st.level if fresh else None)]
        self._events(b, st, events, p, now_ms, lines)
        b.groups.append((tp, msg, lines))

    def _events(
        self,
        b: _Batch,
        st: MachineState,
        events: list[AlertEvent],
        p: Prediction | None,
        now_ms: int,
        lines: list[str],
    ) -> None:
        for e in events:
            lines.append(alert_line(e))
            b.kinds[e.kind] += 1
            if e.kind == "transition" and e.to_level == "OK":
                b.ended.append((e.incident_key, e.time_ms))
            if p is not None and opens_ticket(e, self.rules):
                b.tickets.append(
                    new_ticket(
                        st, e.to_level, e.time_ms, p.model_version, self.config.bucket, now_ms
                    )
                )

    def process(self, polled: dict[Any, list[Any]]) -> dict[Any, int]:
        """Apply one polled batch, make its outputs durable and commit it."""
        if self.runtime.rebalanced.is_set():
            self.runtime.rebalanced.clear()
            self._states.clear()
        b = _Batch()
        now_ms = int(self._wall() * 1000)
        applied = store.stored_offsets(self._conn, self.config.group, self.config.topic)
        for tp, messages in polled.items():
            floor = applied.get(tp.partition, -1)
            for msg in messages:
                b.offsets[tp] = msg.offset + 1
                b.consumed += 1
                if msg.offset < floor:
                    self.metrics.skipped += 1
                    continue
                self._record(b, tp, msg, now_ms)
            # A poll that ends among skipped records stores (and commits) the floor, not its
            # own lower offset: a crash would otherwise apply the records between again.
            b.offsets[tp] = max(b.offsets[tp], floor)
        self._deliver(b)
        opened = 0

        def store_commit() -> None:
            nonlocal opened
            opened = self._commit_store(b, applied)
            if self.config.crash_window_s:
                time.sleep(self.config.crash_window_s)

        self.runtime.commit(
            self.runtime.offsets(b.offsets),
            lambda: self.runtime.send_letters(self.config.dlq_topic, b.dead),
            before_commit=store_commit,
        )
        self.metrics.add(b.consumed, b.points, opened, b.reasons, b.kinds)
        return b.offsets

    def _commit_store(self, b: _Batch, applied: dict[int, int]) -> int:
        """States, tickets, outbox rows and offsets in one transaction; returns tickets opened."""
        opened = 0
        offsets = {tp.partition: o for tp, o in b.offsets.items()}
        try:
            with store.transaction(self._conn) as conn:
                store.advance_offsets(
                    conn,
                    self.config.group,
                    self.config.topic,
                    {p: applied.get(p) for p in offsets},
                    offsets,
                )
                store.save_states(conn, {e: self._states[e] for e in b.touched})
                opened = self._open_tickets(conn, b.tickets)
                for key, end in b.ended:
                    store.end_incident(conn, key, end)
        except store.PartitionMoved as moved:
            log.warning("alert: partition %s was applied by another instance; batch dropped", moved)
            self._states.clear()
        return opened

    def _open_tickets(self, conn: sqlite3.Connection, tickets: list[dict[str, Any]]) -> int:
        from alerting.influx import ticket_line
        from alerting.tickets import document

        opened = 0
        for t in tickets:
            tid = store.insert_ticket(conn, t)
            if tid is None:
                continue
            opened += 1
            row = {**t, "id": tid}
            doc = orjson.dumps(document(row, self._silences().asset_type(t["equipment_id"])))
            key = t["incident_key"]
            for sink in self.config.sinks:
                store.add_outbox(conn, sink, f"{key}:open", key, doc)
            line = ticket_line(t["equipment_id"], "open", tid, key, "", t["opened_ms"])
            store.add_outbox(conn, "influx", f"{key}:open", key, line.encode())
            log.info("alert: ticket %d opened for %s", tid, key)
        return opened

    def _deliver(self, b: _Batch) -> None:
        """Write the batch's points; each record whose points InfluxDB refuses is a dead letter.

        The write is bisected by source record (:func:`pipeline.influxlines.isolate`):
        every other record's points are written. Of a refused record, each point is then
        tried alone, so that its points InfluxDB takes (an ``alerts`` event beside a refused
        ``failure_risk`` point) are not lost; the record goes to the DLQ, reason
        ``sink_refused``, with InfluxDB's words. An outage is retried inside each attempt
        (:meth:`_write`), never taken for a refusal.
        """

        def attempt(part: Sequence[tuple[Any, Any, list[str]]]) -> None:
            self._write([line for _tp, _msg, lines in part for line in lines])

        b.points = sum(len(lines) for _tp, _msg, lines in b.groups)
        for (tp, msg, lines), exc in isolate(b.groups, attempt):
            refused = [(lines[0], exc)] if len(lines) == 1 else self._refused_of(lines)
            if not refused:  # refused together, taken one by one: nothing is lost
                continue
            b.points -= len(refused)
            what = ", ".join(sorted({line.split(",", 1)[0] for line, _exc in refused}))
            detail = (
                f"InfluxDB refused {len(refused)} of the record's {len(lines)} point(s) "
                f"({what}): {refused[0][1].detail}"
            )
            log.warning("alert: partition %d offset %d: %s", tp.partition, msg.offset, detail)
            b.dead.append(letter_of(tp, msg, "sink_refused", detail, "alerting"))
            b.reasons["sink_refused"] += 1

    def _refused_of(self, lines: list[str]) -> list[tuple[str, RefusedWriteError]]:
        """Write each line alone; the ones InfluxDB refuses, with its words."""
        refused = []
        for line in lines:
            try:
                self._write([line])
            except RefusedWriteError as exc:
                refused.append((line, exc))
        return refused

    def _write(self, lines: list[str]) -> None:
        retry_paused(
            self.runtime.consumer,
            lambda: self._writer.write(lines),
            TransientWriteError,
            self.config.backoff_max_s,
            log,
            "alert",
            "InfluxDB is back",
            self.metrics.set_lag,
            self.metrics.retried,
        )

    def check_deadman(self) -> int:
        """Raise NODATA for machines of the assigned partitions that went quiet."""
        if self.rules.deadman_ms <= 0:
            return 0
        parts = [tp.partition for tp in self.runtime.consumer.assignment()]
        now_ms = int(self._wall() * 1000)
        b = _Batch()
        lines: list[str] = []
        for part, st in store.states_in(self._conn, parts):
            silenced = self._silences().active(st.equipment_id, now_ms)
            event = check_deadman(st, now_ms, self.rules, silenced=silenced)
            if event is not None:
                self._states[st.equipment_id] = (part, st)
                b.touched.add(st.equipment_id)
                self._events(b, st, [event], None, now_ms, lines)
                log.warning("alert: %s: %s", st.equipment_id, event.reason)
        if b.touched:
            # No record to dead-letter: a NODATA point that InfluxDB refuses is logged and
            # dropped (the state change stands, as for a refused prediction's).
            refused = isolate(lines, lambda part: self._write(list(part)))
            for line, exc in refused:
                log.warning("alert: InfluxDB refused a deadman point, dropped: %s: %s", exc, line)
            with store.transaction(self._conn) as conn:
                store.save_states(conn, {e: self._states[e] for e in b.touched})
            self.metrics.add(0, len(lines) - len(refused), 0, Counter(), b.kinds)
        return len(b.touched)

    def run(
        self,
        stop: threading.Event,
        *,
        idle_exit_s: float | None = None,
        on_log: Callable[[str], None] | None = None,
    ) -> AlertMetrics:
        """Consume until ``stop`` is set (or ``idle_exit_s`` passed without a record).

        Idle time counts only while Kafka answers and the consumer has caught up on
        partitions it owns (:mod:`pipeline.idle`): an outage or a rebalance is not idle.
        """
        self._last_dead = self.runtime.clock()

        def step(polled: dict[Any, list[Any]], now: float) -> None:
            if polled:
                with self.metrics.batch_seconds.time():
                    self.process(polled)
            self.runtime.lag()  # every poll, as ingest's
            backlog = sum(len(v) for v in polled.values()) >= self.config.max_poll_records
            if now - self._last_dead >= self.config.deadman_every_s and not backlog:
                self.check_deadman()
                self._last_dead = now

        self.runtime.run(
            stop,
            step,
            self.metrics.line,
            lambda: self.metrics.consumed,
            idle_exit_s=idle_exit_s,
            on_log=on_log,
        )
        return self.metrics
