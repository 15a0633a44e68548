"""The alert state machine of one machine: pure, clock injected, prediction time inside.

Per machine the state holds its alert level (OK / WARNING / CRITICAL), the open incident
and the counters that pending, flapping and repeat need. :func:`step` feeds one
prediction (its own time ``window_end`` and probability) and returns the events it
caused; :func:`check_deadman` is called with the wall clock. Transitions depend only on
the prediction stream, so a replay yields the same events and the same incident keys
``"{equipment_id}:{incident_start_ms}"`` (the prediction time of the step that left OK).

Event kinds: ``transition`` (the level changed), ``repeat`` (a reminder while raised),
``flapping`` (a step down is held because the level changed too often),
``unsilenced`` (a silence ended while raised), ``nodata`` / ``data`` (the deadman fired /
predictions came back).

>>> rules = Rules(pending_steps=2)
>>> st = MachineState("pump-1")
>>> step(st, 1000, 0.9, rules), step(st, 2000, 0.9, rules)[0].to_level
([], 'CRITICAL')
>>> st.incident_start, step(st, 3000, 0.1, rules)[0].incident_key
(2000, 'pump-1:2000')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from alerting.rules import RANK, Rules

HISTORY = 12
# events that open a ticket when they reach the ticket level (one per incident)
TICKET_KINDS = ("transition", "unsilenced", "repeat")


@dataclass(frozen=True)
class AlertEvent:
    """Something worth recording: a level change, a reminder, a held flap, a deadman."""

    equipment_id: str
    time_ms: int
    kind: str
    from_level: str
    to_level: str
    incident_key: str
    reason: str
    probability: float
    silenced: bool = False


@dataclass
class MachineState:
    """Everything the state machine remembers about one machine (JSON-serialisable)."""

    equipment_id: str
    level: str = "OK"
    incident_start: int | None = None
    notified: str = "OK"
    last_time: int | None = None
    pending_since: int | None = None
    pending_count: int = 0
    flapping: bool = False
    quiet_since: int | None = None
    changes: list[int] = field(default_factory=list)
    last_event: int | None = None
    seen_wall_ms: int | None = None
    nodata: bool = False
    history: list[tuple[int, float]] = field(default_factory=list)
    top: list[tuple[str, float]] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> MachineState:
        """Back from :meth:`to_doc`."""
        state = cls(**doc)
        state.history = [(int(t), float(p)) for t, p in state.history]
        state.top = [(str(s), float(v)) for s, v in state.top]
        return state

    def key(self) -> str:
        """The open incident's key (or the machine's key when none is open)."""
        return f"{self.equipment_id}:{self.incident_start}"

    def trend_per_hour(self) -> float:
        """Least-squares slope of recent probabilities, per hour of prediction time."""
        pts = self.history
        if len(pts) < 2 or pts[-1][0] == pts[0][0]:
            return 0.0
        n = len(pts)
        mt = sum(t for t, _ in pts) / n
        mp = sum(p for _, p in pts) / n
        num = sum((t - mt) * (p - mp) for t, p in pts)
        den = sum((t - mt) ** 2 for t, _ in pts)
        return num / den * 3_600_000 if den else 0.0


def opens_ticket(event: AlertEvent, rules: Rules) -> bool:
    """Whether ``event`` opens its incident's ticket (if the incident has none yet).

    An unsilenced transition, reminder or end of silence at or above the ticket level;
    the alerting service and :func:`evaluation.replay.replay_tickets` both ask this.
    """
    return (
        event.kind in TICKET_KINDS
        and not event.silenced
        and RANK.get(event.to_level, 0) >= RANK[rules.ticket_level]
    )


def target_level(probability: float, current: str, rules: Rules) -> str:
    """The level that ``probability`` calls for, with hysteresis around ``current``.

    >>> r = Rules()
    >>> target_level(0.55, "OK", r), target_level(0.55, "CRITICAL", r)
    ('WARNING', 'CRITICAL')
    >>> target_level(0.45, "WARNING", r), target_level(0.45, "OK", r)
    ('WARNING', 'OK')
    """
    rank = RANK[current]
    if probability >= rules.critical or (rank == 2 and probability >= rules.critical_reset):
        return "CRITICAL"
    if probability >= rules.warning or (rank >= 1 and probability >= rules.warning_reset):
        return "WARNING"
    return "OK"


def _event(
    st: MachineState, t: int, kind: str, to: str, reason: str, p: float, s: bool
) -> AlertEvent:
    return AlertEvent(st.equipment_id, t, kind, st.level, to, st.key(), reason, p, s)


def _change(st: MachineState, to: str, t: int, p: float, silenced: bool, reason: str) -> AlertEvent:
    if st.level == "OK":
        st.incident_start = t
    event = _event(st, t, "transition", to, reason, p, silenced)
    st.level = to
    st.changes.append(t)
    st.last_event = t
    st.pending_since, st.pending_count, st.quiet_since = None, 0, None
    if to == "OK":
        st.incident_start, st.notified, st.flapping = None, "OK", False
    elif not silenced and RANK[to] > RANK[st.notified]:
        st.notified = to
    return event


def _pending_done(st: MachineState, t: int, rules: Rules) -> bool:
    if rules.pending_steps == 0 and rules.pending_ms == 0:
        return True
    if rules.pending_steps > 0 and st.pending_count >= rules.pending_steps:
        return True
    return (
        rules.pending_ms > 0
        and st.pending_since is not None
        and (t - st.pending_since >= rules.pending_ms)
    )


def _down(
    st: MachineState, target: str, t: int, p: float, rules: Rules, s: bool
) -> list[AlertEvent]:
    reset = rules.critical_reset if st.level == "CRITICAL" else rules.warning_reset
    if not st.flapping and len(st.changes) < rules.flap_count:
        return [_change(st, target, t, p, s, f"probability {p:.3f} < reset {reset}")]
    if not st.flapping:
        st.flapping, st.quiet_since = True, t
        st.last_event = t
        why = f"{len(st.changes)} level changes within {rules.flap_window_ms} ms: holding"
        return [_event(st, t, "flapping", st.level, why, p, s)]
    if st.quiet_since is None:
        st.quiet_since = t
    if t - st.quiet_since >= rules.flap_window_ms:
        why = f"flapping ended: below {reset} for {rules.flap_window_ms} ms"
        return [_change(st, target, t, p, s, why)]
    return []


def step(
    st: MachineState,
    time_ms: int,
    probability: float,
    rules: Rules,
    *,
    silenced: bool = False,
    wall_ms: int | None = None,
    top: list[tuple[str, float]] | None = None,
) -> list[AlertEvent]:
    """Feed one prediction; returns the events it caused (usually none).

    Args:
        st: the machine's state (updated in place).
        time_ms: the prediction's own time (``window_end``).
        probability: the failure probability.
        rules: thresholds and timings.
        silenced: a silence covers this machine at ``time_ms``.
        wall_ms: wall-clock receipt time, for the deadman.
        top: the top contributing sensors, kept for tickets.
    """
    events: list[AlertEvent] = []
    if st.nodata:
        st.nodata = False
        key = f"{st.equipment_id}:nodata:{st.seen_wall_ms}"
        why = "predictions resumed"
        events.append(
            AlertEvent(st.equipment_id, time_ms, "data", "NODATA", st.level, key, why, probability)
        )
    if wall_ms is not None:
        st.seen_wall_ms = wall_ms
    if st.last_time is not None and time_ms <= st.last_time:
        return events  # a re-delivery or an older prediction: no state change
    st.last_time = time_ms
    st.history = [*st.history, (time_ms, probability)][-HISTORY:]
    if top is not None:
        st.top = list(top)
    st.changes = [c for c in st.changes if c > time_ms - rules.flap_window_ms]
    target = target_level(probability, st.level, rules)
    if RANK[target] > RANK[st.level]:
        st.quiet_since = None
        if st.pending_since is None:
            st.pending_since, st.pending_count = time_ms, 0
        st.pending_count += 1
        if _pending_done(st, time_ms, rules):
            limit = rules.critical if target == "CRITICAL" else rules.warning
            why = f"probability {probability:.3f} >= {limit} for {st.pending_count} steps"
            events.append(_change(st, target, time_ms, probability, silenced, why))
    elif RANK[target] < RANK[st.level]:
        st.pending_since, st.pending_count = None, 0
        events.extend(_down(st, target, time_ms, probability, rules, silenced))
    else:
        st.pending_since, st.pending_count, st.quiet_since = None, 0, None
    if any(e.kind in ("transition", "flapping") for e in events) or st.level == "OK":
        return events
    if not silenced and RANK[st.notified] < RANK[st.level]:
        st.notified, st.last_event = st.level, time_ms
        why = "silence ended while raised"
        events.append(_event(st, time_ms, "unsilenced", st.level, why, probability, False))
    elif (
        not silenced
        and rules.repeat_ms > 0
        and st.last_event is not None
        and time_ms - st.last_event >= rules.repeat_ms
    ):
        st.last_event = time_ms
        why = f"still {st.level} after {rules.repeat_ms} ms"
        events.append(_event(st, time_ms, "repeat", st.level, why, probability, False))
    return events


def check_deadman(
    st: MachineState, now_wall_ms: int, rules: Rules, *, silenced: bool = False
) -> AlertEvent | None:
    """Raise NODATA once when a machine's predictions stopped for ``deadman_ms`` (wall clock)."""
    if rules.deadman_ms <= 0 or st.nodata or st.seen_wall_ms is None:
        return None
    if now_wall_ms - st.seen_wall_ms < rules.deadman_ms:
        return None
    st.nodata = True
    last = st.history[-1][1] if st.history else 0.0
    why = f"no prediction for {now_wall_ms - st.seen_wall_ms} ms (deadman {rules.deadman_ms} ms)"
    return AlertEvent(
        st.equipment_id,
        now_wall_ms,
        "nodata",
        st.level,
        "NODATA",
        f"{st.equipment_id}:nodata:{st.seen_wall_ms}",
        why,
        last,
        silenced,
    )
